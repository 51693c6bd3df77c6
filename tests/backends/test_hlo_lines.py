# ruff: noqa: E501  (HLO text as XLA writes it)
"""backends/xla/hlo_lines.py: XLA's HLO text read back to the source lines of its ops."""

from __future__ import annotations

from flowjit.backends.xla.hlo_lines import HloLines, SourceLine

HLO = """HloModule jit_step, is_scheduled=true

FileNames
1 "train.py"

FunctionNames
1 "dot_general"
2 "tanh"

FileLocations
1 {file_name_id=1 function_name_id=1 line=7 end_line=7 column=0 end_column=0}
2 {file_name_id=1 function_name_id=2 line=9 end_line=9 column=0 end_column=0}

StackFrames
1 {file_location_id=1 parent_frame_id=1}
2 {file_location_id=2 parent_frame_id=1}

%fused (p0: f32[8,16], p1: f32[16,4]) -> f32[8,4] {
  %p0 = f32[8,16]{1,0} parameter(0)
  %p1 = f32[16,4]{1,0} parameter(1)
  %dot.1 = f32[8,4]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}, metadata={op_name="jit(step)" stack_frame_id=1}
  ROOT %tanh.1 = f32[8,4]{1,0} tanh(%dot.1), metadata={op_name="jit(step)" stack_frame_id=2}
}

ENTRY %main (a: f32[8,16], b: f32[16,4]) -> f32[8,4] {
  %a = f32[8,16]{1,0} parameter(0)
  %b = f32[16,4]{1,0} parameter(1)
  %copy.1 = f32[16,4]{1,0} copy(%b)
  ROOT %fusion.1 = f32[8,4]{1,0} fusion(%a, %copy.1), kind=kLoop, calls=%fused, metadata={op_name="jit(step)" stack_frame_id=1}
}
"""


def test_a_fusion_splits_by_its_ops_costs_and_names_their_lines():
    hlo = HloLines(HLO)
    assert hlo.module == "jit_step" and hlo.entry == "main"
    shares, split = hlo.shares("fusion.1")
    assert split
    dot, tanh = SourceLine("train.py", 7, "dot_general"), SourceLine("train.py", 9, "tanh")
    # the dot: 2 * 32 outputs * 16 multiply-adds = 1024; tanh: 32 elements
    assert dict(shares) == {dot: 1024 / 1056, tanh: 32 / 1056}
    assert str(dot) == "train.py:7"


def test_an_op_without_metadata_or_unknown_has_no_line():
    hlo = HloLines(HLO)
    assert hlo.shares("copy.1") == ([(None, 1.0)], False)
    assert hlo.shares("not-there") == ([(None, 1.0)], False)
    assert hlo.line_of("fusion.1") == SourceLine("train.py", 7, "dot_general")


def test_each_top_level_instruction_has_a_kind_of_work():
    text = HLO.replace(
        "  ROOT %fusion.1",
        '  %ar = f32[16,4]{1,0} all-reduce(%copy.1), to_apply=%fused\n'
        '  %cb = f32[16,4]{1,0} custom-call(%ar), custom_call_target="xla_ffi_python_cpu_callback"\n'
        "  ROOT %fusion.1",
    )
    hlo = HloLines(text)
    kinds = {name: hlo.category(name) for name in ("ar", "cb", "copy.1", "fusion.1", "nope")}
    assert kinds == {
        "ar": "collective",
        "cb": "host call",
        "copy.1": "transfer",
        "fusion.1": "compute",
        "nope": "compute",
    }
