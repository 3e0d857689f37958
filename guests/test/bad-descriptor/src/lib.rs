//! `bad-descriptor.v1`: a specialist built with the SDK whose descriptor
//! version is `1.0` (not semver), the mistake the host must refuse at
//! install and `lily runnables build` must explain.
use lily_guest::{RunError, Specialist, SpecialistInput, SpecialistOutput};

struct BadDescriptor;

impl Specialist for BadDescriptor {
    const ID: &'static str = "bad-descriptor.v1";
    const VERSION: &'static str = "1.0";
    const SUMMARY: &'static str = "Test specialist whose version is not semver";

    fn review(_input: &SpecialistInput) -> Result<SpecialistOutput, RunError> {
        Ok(SpecialistOutput {
            findings: vec![],
            notes: "never installed".into(),
        })
    }
}

lily_guest::export_specialist!(BadDescriptor);
