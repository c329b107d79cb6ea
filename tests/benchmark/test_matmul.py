"""The machine's multiply-accumulate ceilings and each row's share of them."""

from __future__ import annotations

import pytest

from crosspose.benchmark.matmul import ceiling_lines, ceiling_rows, matmul_rates


def test_ceiling_is_the_faster_kernel_and_unsupported_precisions_are_not_timed() -> None:
    reason = "not supported on this CPU (no avx512_bf16 / amx_bf16)"
    rates = matmul_rates(threads=1, size=128, repeats=1, support={"fp32": None, "bf16": reason, "int8": None})
    assert rates["gmac_per_s"]["bf16"] is None and rates["unsupported"] == {"bf16": reason}
    assert "bf16" not in rates["kernels"]
    for precision in ("fp32", "int8"):
        kernels = rates["kernels"][precision]
        assert kernels["matmul"] > 0 and kernels["conv"] > 0, precision
        assert rates["gmac_per_s"][precision] == max(kernels.values())


def test_rows_are_held_against_their_own_precision() -> None:
    matmul = {"gmac_per_s": {"fp32": 100.0, "bf16": 200.0, "int8": 400.0}, "unsupported": {}, "size": 2048,
              "threads": 2}
    rows = ceiling_rows([("tool A", "fp32", 5.0), ("tool B int8", "int8", 40.0), ("tool C", "bf16", None)],
                        gmac_per_image=10.0, rates=matmul["gmac_per_s"])
    assert [r["share"] for r in rows] == [pytest.approx(0.5), pytest.approx(1.0), None]
    text = "\n".join(ceiling_lines(rows, matmul, 10.0, reference="tool A", target=6.0))
    assert "| tool A | fp32 | 5.00 | 50 | 50 % |" in text and "| tool C | bf16 | n/a | n/a | n/a |" in text
    # 6x over 50 GMAC/s is 300 GMAC/s: 150 % of bf16's 200 (4.0x at most), 75 % of int8's 400 (8.0x)
    assert ("For 6x over tool A: bf16 would have to run at 150 % of its ceiling (at 100 % it would be 4.0x); "
            "int8 would have to run at 75 % of its ceiling (at 100 % it would be 8.0x).") in text
