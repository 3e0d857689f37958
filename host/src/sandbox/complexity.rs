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

/// Wall-clock time one compile may take: a floor plus time per MiB, so the
/// largest honest runnables (an 18 MB Python component compiles in ~30 s of
/// CPU here) fit and a pathological small one does not run for minutes.
pub fn compile_budget(bytes: usize) -> Duration {
    Duration::from_secs(60) + Duration::from_secs(4) * u32::try_from(bytes >> 20).unwrap_or(u32::MAX)
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
}
