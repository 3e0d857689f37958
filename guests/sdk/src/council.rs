//! The typed specialist / synthesizer traits that hide the raw bindings.
//! The council data model itself (inputs, reports, findings, schemas,
//! [`rank`]) is `lily-contract`'s, the crate the host uses too; it is
//! re-exported here.

use crate::bindings::Guest;
use crate::{Descriptor, Envelope, Kind, RunError, error, ok_envelope, parse_input};
pub use lily_contract::council::*;
use std::marker::PhantomData;

/// A specialist: reviews a topic (and, if granted, `/workspace`).
pub trait Specialist {
    const ID: &'static str;
    const VERSION: &'static str;
    const SUMMARY: &'static str;
    fn review(input: &SpecialistInput) -> Result<SpecialistOutput, RunError>;
}

/// A synthesizer: turns specialist reports into the council output.
pub trait Synthesizer {
    const ID: &'static str;
    const VERSION: &'static str;
    const SUMMARY: &'static str;
    /// [`Kind::Synthesizer`] for deterministic ones, [`Kind::Llm`] for
    /// model-backed ones.
    const KIND: Kind = Kind::Synthesizer;
    fn synthesize(input: &SynthInput) -> Result<CouncilOutput, RunError>;
}

/// Adapts a [`Specialist`] to the raw [`Guest`] exports.
pub struct SpecialistAdapter<T>(PhantomData<T>);

impl<T: Specialist + 'static> Guest for SpecialistAdapter<T> {
    fn describe() -> Descriptor {
        Descriptor {
            id: T::ID.to_string(),
            version: T::VERSION.to_string(),
            summary: T::SUMMARY.to_string(),
            kind: Kind::Specialist,
            input_schema: specialist_input_schema(),
            output_schema: specialist_output_schema(),
        }
    }

    fn run(input: String) -> Result<Envelope, RunError> {
        let input: SpecialistInput = parse_input(&input)?;
        if input.topic.trim().is_empty() {
            return Err(error("invalid_input", "topic must not be empty"));
        }
        let out = T::review(&input)?;
        ok_envelope(&out, Vec::new(), Vec::new())
    }
}

/// Adapts a [`Synthesizer`] to the raw [`Guest`] exports.
pub struct SynthesizerAdapter<T>(PhantomData<T>);

impl<T: Synthesizer + 'static> Guest for SynthesizerAdapter<T> {
    fn describe() -> Descriptor {
        Descriptor {
            id: T::ID.to_string(),
            version: T::VERSION.to_string(),
            summary: T::SUMMARY.to_string(),
            kind: T::KIND,
            input_schema: synth_input_schema(),
            output_schema: council_output_schema(),
        }
    }

    fn run(input: String) -> Result<Envelope, RunError> {
        let input: SynthInput = parse_input(&input)?;
        let out = T::synthesize(&input)?;
        let refs = out.participating_specialists.clone();
        ok_envelope(&out, Vec::new(), refs)
    }
}

/// Export a [`Specialist`] as this component's `describe` / `run`.
#[macro_export]
macro_rules! export_specialist {
    ($t:ty) => {
        $crate::export_runnable!($crate::SpecialistAdapter<$t>);
    };
}

/// Export a [`Synthesizer`] as this component's `describe` / `run`.
#[macro_export]
macro_rules! export_synthesizer {
    ($t:ty) => {
        $crate::export_runnable!($crate::SynthesizerAdapter<$t>);
    };
}
