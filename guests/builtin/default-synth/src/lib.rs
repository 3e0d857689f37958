//! `default.v1`: the deterministic council synthesizer.
use lily_guest::{CouncilOutput, RunError, SynthInput, Synthesizer, error, rank};

struct Default;

impl Synthesizer for Default {
    const ID: &'static str = "default.v1";
    const VERSION: &'static str = "1.0.0";
    const SUMMARY: &'static str = "Ranks findings by (-confidence, specialist, title) and keeps the top max_findings";

    fn synthesize(input: &SynthInput) -> Result<CouncilOutput, RunError> {
        if !(1..=20).contains(&input.max_findings) {
            return Err(error("invalid_input", format!("max_findings must be 1-20, got {}", input.max_findings)));
        }
        Ok(rank(input))
    }
}

lily_guest::export_synthesizer!(Default);
