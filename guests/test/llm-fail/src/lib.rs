//! `llm-fail.v1`: a stand-in for a model-backed synthesizer that always fails.
use lily_guest::{CouncilOutput, Kind, RunError, SynthInput, Synthesizer};

struct LlmFail;

impl Synthesizer for LlmFail {
    const ID: &'static str = "llm-fail.v1";
    const VERSION: &'static str = "1.0.0";
    const SUMMARY: &'static str = "Test llm synthesizer that always fails";
    const KIND: Kind = Kind::Llm;

    fn synthesize(_input: &SynthInput) -> Result<CouncilOutput, RunError> {
        Err(RunError {
            code: "model_unavailable".into(),
            message: "model endpoint unavailable".into(),
            retryable: false,
        })
    }
}

lily_guest::export_synthesizer!(LlmFail);
