//! `spin-describe.v1`: loops forever in `describe` (hostile).
use lily_guest::{Descriptor, Envelope, Guest, RunError, error};

struct Spin;

impl Guest for Spin {
    fn describe() -> Descriptor {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
    fn run(_input: String) -> Result<Envelope, RunError> {
        Err(error("unreachable", "describe never returns"))
    }
}

lily_guest::export_runnable!(Spin);
