"""The Lily guest SDK for Python (Run Contract R0, `wit/runnable.wit`).

Subclass :class:`Specialist` (or :class:`Synthesizer`), then export it from
your `app.py` as the world's class::

    import lily_guest as lily

    class MyCheck(lily.Specialist):
        id = "my-check.v1"
        version = "0.1.0"
        summary = "What it checks"

        def review(self, input):
            return [lily.Finding("title", "do this", 0.5, ["a.py:1"])]

    WitWorld = lily.export(MyCheck)

`describe`, input parsing and validation, the JSON Schemas, the envelope,
and turning exceptions into the contract's `run-error` come for free;
`lily.http` makes outbound requests (`http = true` under `[tool.lily]`).
Everything here is pure Python: without WebAssembly (in unit tests) the
host imports are replaced by recorders (see :data:`recorded`).
It mirrors the Rust SDK (`guests/sdk`) and the council model (`contract/`).
"""

from .council import (
    Finding,
    Report,
    SpecialistInput,
    SynthInput,
    RankedFinding,
    CouncilOutput,
    specialist_input_schema,
    specialist_output_schema,
    synth_input_schema,
    council_output_schema,
    WORKSPACE_GUEST_PATH,
)
from . import http
from .runtime import (
    RunError,
    Specialist,
    Synthesizer,
    export,
    emit,
    propose_write_file,
    propose_publish,
    propose_send,
    llm_complete,
    llm_models,
    recorded,
    run_native,
    TRACEBACK_CAP,
)

__all__ = [
    "http",
    "Finding",
    "Report",
    "SpecialistInput",
    "SynthInput",
    "RankedFinding",
    "CouncilOutput",
    "specialist_input_schema",
    "specialist_output_schema",
    "synth_input_schema",
    "council_output_schema",
    "WORKSPACE_GUEST_PATH",
    "RunError",
    "Specialist",
    "Synthesizer",
    "export",
    "emit",
    "propose_write_file",
    "propose_publish",
    "propose_send",
    "llm_complete",
    "llm_models",
    "recorded",
    "run_native",
    "TRACEBACK_CAP",
]
