//! Bounds on compiling a component: its size, its control-flow nesting
//! (Cranelift's compile time grows quadratically with it), and the time the
//! compile itself may take.
//!
//! The nesting check is one linear pass over the code with `wasmparser`
//! before anything is handed to Cranelift; the time budget is a backstop for
//! whatever that pass does not predict.

use std::time::Duration;
use wasmparser::{Operator, Parser, Payload};

/// Deepest block / loop / if / try nesting accepted in one function. Real
/// code (interpreters' dispatch switches included) stays in the hundreds;
/// 4,096 levels compile in well under a second.
pub const MAX_NESTING: usize = 4096;

/// Default ceiling on a component's size (the policy's
/// `limits.max_component_mb` may lower or raise it).
pub const DEFAULT_MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// CPU time one compile may take: a floor plus time per MiB, so the largest
/// honest runnables (an 18 MB Python component compiles in ~20-30 s of CPU
/// here) fit and a pathological small one does not run for minutes. CPU
/// time, not wall-clock: on a loaded machine a compile waits for a core
/// without being charged for it (see [`CompileClock`]).
pub fn compile_budget(bytes: usize) -> Duration {
    Duration::from_secs(60) + Duration::from_secs(4) * u32::try_from(bytes >> 20).unwrap_or(u32::MAX)
}

/// How many times the CPU budget a compile may take in wall-clock time: the
/// backstop that ends a compile starved of CPU (a machine loaded this much
/// many times over would not finish it in a useful time anyway).
pub const WALL_FACTOR: u32 = 8;

/// The process's CPU time (user + system, every thread).
#[allow(unsafe_code)] // getrusage(2): the one libc call std has no wrapper for
pub fn process_cpu_time() -> Duration {
    // SAFETY: getrusage writes the whole struct it is given and reads nothing.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid, writable pointer cannot fail.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.clamp(0, 999_999) as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// What one compile is charged. Cranelift compiles a component's functions
/// on a thread pool, so the compile's own CPU time cannot be told apart from
/// other threads': the process's CPU time since the compile started is
/// charged instead. Compiles run one at a time in a process (the pool
/// already uses every core), so the only other CPU charged is that of steps
/// running meanwhile, which only makes the budget stricter.
#[derive(Debug, Clone, Copy)]
pub struct CompileClock {
    started: std::time::Instant,
    cpu_at_start: Duration,
    budget: Duration,
}

/// Why a compile was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverBudget {
    /// More CPU time than the budget.
    Cpu(Duration),
    /// More wall-clock time than [`WALL_FACTOR`] × the budget.
    Wall(Duration),
}

impl CompileClock {
    /// Start charging a compile of `bytes` now.
    pub fn start(bytes: usize) -> Self {
        Self {
            started: std::time::Instant::now(),
            cpu_at_start: process_cpu_time(),
            budget: compile_budget(bytes),
        }
    }

    /// `Err` once the compile has used its budget, given the process CPU
    /// time and the instant now.
    pub fn check_at(&self, cpu_now: Duration, now: std::time::Instant) -> Result<(), OverBudget> {
        if cpu_now.saturating_sub(self.cpu_at_start) > self.budget {
            return Err(OverBudget::Cpu(self.budget));
        }
        let wall = self.budget * WALL_FACTOR;
        if now.saturating_duration_since(self.started) > wall {
            return Err(OverBudget::Wall(wall));
        }
        Ok(())
    }

    /// [`Self::check_at`] now.
    pub fn check(&self) -> Result<(), OverBudget> {
        self.check_at(process_cpu_time(), std::time::Instant::now())
    }
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OverBudget::Cpu(b) => write!(f, "compiling it exceeded the budget of {} s of CPU time", b.as_secs()),
            OverBudget::Wall(w) => write!(
                f,
                "compiling it took more than {} s of wall-clock time (the machine is starved of CPU)",
                w.as_secs()
            ),
        }
    }
}

/// A function nesting control flow deeper than [`MAX_NESTING`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("function {function} nests control flow more than {MAX_NESTING} levels deep; the host refuses to compile it")]
pub struct TooDeep {
    /// 1-based index among the module's function bodies.
    pub function: usize,
}

/// Why a component is refused before compiling, or `Ok` if it may be
/// compiled. Malformed bytes are not refused here (the compiler reports them
/// with its own message).
pub fn precheck(bytes: &[u8]) -> Result<(), TooDeep> {
    let mut function = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(Payload::CodeSectionEntry(body)) = payload else {
            if payload.is_err() {
                return Ok(());
            }
            continue;
        };
        function += 1;
        let Ok(mut ops) = body.get_operators_reader() else {
            return Ok(());
        };
        let (mut depth, mut max) = (0usize, 0usize);
        while !ops.eof() {
            match ops.read() {
                Ok(Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } | Operator::TryTable { .. } | Operator::Try { .. }) => {
                    depth += 1;
                    max = max.max(depth);
                    if max > MAX_NESTING {
                        return Err(TooDeep { function });
                    }
                }
                Ok(Operator::End) => depth = depth.saturating_sub(1),
                Ok(_) => {}
                Err(_) => return Ok(()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core module with one function nesting `depth` blocks.
    pub fn nested_blocks(depth: usize) -> Vec<u8> {
        let mut m = wasm_encoder::Module::new();
        let mut types = wasm_encoder::TypeSection::new();
        types.ty().function([], []);
        m.section(&types);
        let mut funcs = wasm_encoder::FunctionSection::new();
        funcs.function(0);
        m.section(&funcs);
        let mut code = wasm_encoder::CodeSection::new();
        let mut f = wasm_encoder::Function::new([]);
        for _ in 0..depth {
            f.instruction(&wasm_encoder::Instruction::Block(wasm_encoder::BlockType::Empty));
        }
        for _ in 0..depth {
            f.instruction(&wasm_encoder::Instruction::End);
        }
        f.instruction(&wasm_encoder::Instruction::End);
        code.function(&f);
        m.section(&code);
        m.finish()
    }

    #[test]
    fn deep_nesting_is_refused_before_compiling() {
        assert!(precheck(&nested_blocks(100)).is_ok());
        assert!(precheck(&nested_blocks(MAX_NESTING)).is_ok());
        let e = precheck(&nested_blocks(MAX_NESTING + 1)).expect_err("refused");
        assert!(e.to_string().contains("nests control flow"), "{e}");
        assert!(precheck(b"not wasm").is_ok(), "malformed bytes are left to the compiler");
    }

    #[test]
    fn the_budget_grows_with_size() {
        assert_eq!(compile_budget(300 << 10), Duration::from_secs(60));
        assert_eq!(compile_budget(18 << 20), Duration::from_secs(132));
    }

    #[test]
    fn a_compile_is_charged_cpu_time_with_a_wall_clock_backstop() {
        let clock = CompileClock::start(300 << 10);
        let (cpu0, t0) = (clock.cpu_at_start, clock.started);
        let s = Duration::from_secs;
        // Waiting for a core is not charged: 5 minutes of wall, 10 s of CPU.
        assert_eq!(clock.check_at(cpu0 + s(10), t0 + s(300)), Ok(()));
        assert_eq!(clock.check_at(cpu0 + s(60), t0 + s(60)), Ok(()));
        assert_eq!(clock.check_at(cpu0 + s(61), t0 + s(61)), Err(OverBudget::Cpu(s(60))));
        // Starved past WALL_FACTOR x the budget: stopped anyway.
        assert_eq!(clock.check_at(cpu0 + s(1), t0 + s(481)), Err(OverBudget::Wall(s(480))));
        assert!(OverBudget::Cpu(s(60)).to_string().contains("budget of 60 s of CPU time"));
        // The process clock moves with work done on any thread.
        let before = process_cpu_time();
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(process_cpu_time() > before, "CPU time advanced");
    }
}
