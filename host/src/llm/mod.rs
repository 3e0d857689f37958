//! Model calls for runnables: the configured providers and aliases
//! (`.lily/config.yaml`), the allow-list and budget a step's grant gives it
//! (`.lily/policy.yaml`), and the providers themselves ([`openai`]).
//!
//! The sandbox asks through [`crate::sandbox::llm::ModelAccess`]; this
//! module answers. A budget is shared by every step of one run whose grant
//! came from the same policy rule, and is exact under concurrency: each
//! call reserves an upper bound of its cost before it is sent and settles
//! to the provider's reported usage afterwards, so no call can overshoot.

pub mod openai;

use crate::config::LlmConfig;
use crate::sandbox::llm::{BudgetLeft, Completion, LlmError, LlmReply, LlmRequest, ModelAccess, Models, Usage};
use crate::sandbox::{LlmBudget, LlmGrant};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Tokens a request can be at most: every token covers at least one byte
/// of text, plus what a chat template adds per message. Deliberately an
/// upper bound — the budget reserves it, so a call can never overshoot.
pub fn input_token_bound(req: &LlmRequest) -> u64 {
    req.bytes() as u64 + 16 * req.messages.len() as u64 + 32
}

/// The providers of one root, shared by every run of a `Lily`.
pub struct LlmService {
    config: LlmConfig,
    providers: BTreeMap<String, openai::Provider>,
}

impl LlmService {
    pub fn new(config: &LlmConfig) -> LlmService {
        let providers = config
            .providers
            .iter()
            .map(|(name, p)| (name.clone(), openai::Provider::new(name, p)))
            .collect();
        LlmService {
            config: config.clone(),
            providers,
        }
    }

    /// The configured aliases.
    pub fn aliases(&self) -> Vec<String> {
        self.config.models.keys().cloned().collect()
    }

    /// One call to `alias`, outside any budget (`lily llm check`).
    pub async fn call(&self, req: LlmRequest, deadline: Instant) -> Result<LlmReply, LlmError> {
        let Some(model) = self.config.models.get(&req.model) else {
            return Err(LlmError::ModelNotAllowed {
                message: format!("{:?} is not a model alias in .lily/config.yaml (llm.models)", req.model),
            });
        };
        let Some(provider) = self.providers.get(&model.provider) else {
            return Err(LlmError::ModelNotAllowed {
                message: format!("provider {:?} of {:?} is not configured", model.provider, req.model),
            });
        };
        provider.complete(model, req, deadline).await
    }
}

/// Calls and tokens left under one grant rule in one run.
#[derive(Debug)]
struct Pool {
    left: Mutex<BudgetLeft>,
}

impl Pool {
    fn new(b: &LlmBudget) -> Pool {
        Pool {
            left: Mutex::new(BudgetLeft {
                calls: b.max_calls,
                input_tokens: b.max_input_tokens,
                output_tokens: b.max_output_tokens,
            }),
        }
    }

    /// Take `input` + `output` tokens and a call, or refuse saying which runs short.
    fn reserve(&self, input: u64, output: u64) -> Result<(), LlmError> {
        let mut l = self.left.lock().map_err(|_| LlmError::BudgetExhausted {
            message: "budget lock poisoned".into(),
        })?;
        let short = if l.calls == 0 {
            Some("no calls left".to_string())
        } else if input > l.input_tokens {
            Some(format!("the request may use up to {input} input tokens, {} are left", l.input_tokens))
        } else if output > l.output_tokens {
            Some(format!("max-output-tokens {output} is more than the {} output tokens left", l.output_tokens))
        } else {
            None
        };
        if let Some(why) = short {
            return Err(LlmError::BudgetExhausted { message: why });
        }
        l.calls -= 1;
        l.input_tokens -= input;
        l.output_tokens -= output;
        Ok(())
    }

    /// Settle a reserved call to what it used: give back the rest, or take
    /// what a provider reported beyond the reservation (never below zero).
    fn settle(&self, reserved_in: u64, reserved_out: u64, used: Option<Usage>) {
        let Ok(mut l) = self.left.lock() else { return };
        // Without reported usage the whole reservation stays charged.
        if let Some(u) = used {
            let settle = |left: &mut u64, reserved: u64, used: u64| {
                if used <= reserved {
                    *left += reserved - used;
                } else {
                    *left = left.saturating_sub(used - reserved);
                }
            };
            settle(&mut l.input_tokens, reserved_in, u64::from(u.input_tokens));
            settle(&mut l.output_tokens, reserved_out, u64::from(u.output_tokens));
        }
    }

    /// Charge a call a replay served from the tape.
    fn charge(&self, used: Usage) {
        let Ok(mut l) = self.left.lock() else { return };
        l.calls = l.calls.saturating_sub(1);
        l.input_tokens = l.input_tokens.saturating_sub(u64::from(used.input_tokens));
        l.output_tokens = l.output_tokens.saturating_sub(u64::from(used.output_tokens));
    }

    fn left(&self) -> BudgetLeft {
        self.left.lock().map(|l| *l).unwrap_or_default()
    }
}

/// The model budgets of one run, one pool per granting policy rule.
pub struct RunModels {
    service: Arc<LlmService>,
    pools: Mutex<BTreeMap<String, Arc<Pool>>>,
}

impl RunModels {
    pub fn new(service: Arc<LlmService>) -> RunModels {
        RunModels {
            service,
            pools: Mutex::new(BTreeMap::new()),
        }
    }

    /// What a step with `grant` may do: its aliases, its rule's pool.
    pub fn for_step(&self, grant: &LlmGrant) -> Models {
        let pool = self
            .pools
            .lock()
            .map(|mut p| p.entry(grant.rule.clone()).or_insert_with(|| Arc::new(Pool::new(&grant.budget))).clone())
            .unwrap_or_else(|_| Arc::new(Pool::new(&LlmBudget::default())));
        Models(Arc::new(StepModels {
            service: self.service.clone(),
            allowed: grant.models.clone(),
            pool,
        }))
    }
}

struct StepModels {
    service: Arc<LlmService>,
    allowed: Vec<String>,
    pool: Arc<Pool>,
}

impl ModelAccess for StepModels {
    fn models(&self) -> Vec<String> {
        self.allowed.clone()
    }

    fn budget(&self) -> BudgetLeft {
        self.pool.left()
    }

    fn replayed(&self, outcome: &Result<LlmReply, LlmError>) {
        match outcome {
            Ok(r) => self.pool.charge(r.usage),
            // Refused before anything was sent: nothing was charged then.
            Err(LlmError::ModelNotAllowed { .. } | LlmError::BudgetExhausted { .. } | LlmError::InvalidRequest { .. } | LlmError::ReplayMiss { .. }) => {}
            Err(LlmError::Provider { usage, .. }) => self.pool.charge(usage.unwrap_or_default()),
        }
    }

    fn complete(&self, req: LlmRequest, deadline: Instant) -> Completion<'_> {
        Box::pin(async move {
            if !self.allowed.contains(&req.model) {
                return Err(LlmError::ModelNotAllowed {
                    message: format!("{:?} is not among this step's models ({})", req.model, self.allowed.join(", ")),
                });
            }
            let (input, output) = (input_token_bound(&req), u64::from(req.max_output_tokens));
            self.pool.reserve(input, output)?;
            let result = self.service.call(req, deadline).await;
            let used = match &result {
                Ok(r) => Some(r.usage),
                Err(LlmError::Provider { usage: Some(u), .. }) => Some(*u),
                // Nothing reached a model: the reservation comes back whole.
                Err(LlmError::ModelNotAllowed { .. } | LlmError::InvalidRequest { .. }) => Some(Usage::default()),
                Err(_) => None,
            };
            self.pool.settle(input, output, used);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_never_goes_below_zero_and_settles_to_usage() {
        let p = Pool::new(&LlmBudget {
            max_calls: 2,
            max_input_tokens: 100,
            max_output_tokens: 50,
        });
        assert!(matches!(p.reserve(101, 1), Err(LlmError::BudgetExhausted { .. })));
        assert!(matches!(p.reserve(1, 51), Err(LlmError::BudgetExhausted { .. })));
        p.reserve(80, 40).expect("fits");
        p.settle(
            80,
            40,
            Some(Usage {
                input_tokens: 30,
                output_tokens: 10,
            }),
        );
        assert_eq!(
            p.left(),
            BudgetLeft {
                calls: 1,
                input_tokens: 70,
                output_tokens: 40
            }
        );
        p.reserve(70, 40).expect("fits exactly");
        p.settle(70, 40, None);
        assert_eq!(p.left().calls, 0);
        assert!(matches!(p.reserve(0, 0), Err(LlmError::BudgetExhausted { .. })));
    }

    #[test]
    fn concurrent_reservations_are_exact() {
        let p = Arc::new(Pool::new(&LlmBudget {
            max_calls: 1000,
            max_input_tokens: 1000,
            max_output_tokens: 1000,
        }));
        let granted: u64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let p = p.clone();
                    s.spawn(move || (0..100).filter(|_| p.reserve(3, 1).is_ok()).count() as u64)
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).sum()
        });
        assert_eq!(granted, 333, "1000 input tokens hold exactly 333 reservations of 3");
        assert_eq!(p.left().input_tokens, 1);
    }
}
