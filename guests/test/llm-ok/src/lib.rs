//! `llm-ok.v1`: a stand-in for a model-backed synthesizer that succeeds
//! deterministically (ranks like default.v1, tags the summary).
use lily_guest::{CouncilOutput, Kind, RunError, SynthInput, Synthesizer, rank};

struct LlmOk;

impl Synthesizer for LlmOk {
    const ID: &'static str = "llm-ok.v1";
    const VERSION: &'static str = "1.0.0";
    const SUMMARY: &'static str = "Test llm synthesizer that always succeeds";
    const KIND: Kind = Kind::Llm;

    fn synthesize(input: &SynthInput) -> Result<CouncilOutput, RunError> {
        let mut out = rank(input);
        out.summary = format!("{} [llm]", out.summary);
        Ok(out)
    }
}

lily_guest::export_synthesizer!(LlmOk);
