//! `run_receipt.json` is a contract: receipts written by earlier versions
//! (the files in `tests/data/`, written by Lily 0.1.0 before the receipt
//! became fully typed) still read, and writing what was read gives back the
//! same JSON — the shape did not change.

use lily::runs::{Receipt, RunStatus};
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> (Value, Receipt) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let value: Value = serde_json::from_str(&text).expect("json");
    let receipt: Receipt = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} no longer reads: {e}"));
    (value, receipt)
}

#[test]
fn receipts_of_0_1_0_read_and_write_back_unchanged() {
    for name in ["receipt-0.1.0-demo.json", "receipt-0.1.0-approvals.json", "receipt-0.1.0-failed.json"] {
        let (value, receipt) = fixture(name);
        let again = serde_json::to_value(&receipt).expect("serialize");
        assert_eq!(again, value, "{name}: the JSON shape changed");
    }
}

#[test]
fn what_an_old_receipt_says_is_read_into_its_fields() {
    let (_, demo) = fixture("receipt-0.1.0-demo.json");
    assert_eq!(demo.status, RunStatus::Succeeded);
    assert_eq!(demo.job_id, "demo");
    let (_, failed) = fixture("receipt-0.1.0-failed.json");
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.attempts.len(), 2);
    let (_, approvals) = fixture("receipt-0.1.0-approvals.json");
    assert_eq!(approvals.approvals_requested.len(), 2);
}

#[test]
fn new_receipts_carry_receipt_version_and_old_ones_read_without_it() {
    let r = Receipt::start(
        "j",
        "20260101T000000.000Z-00000000",
        lily::runs::TriggerRecord::Manual,
        "sha256:00",
        "j.job.yaml",
    );
    let v = serde_json::to_value(&r).expect("serialize");
    assert_eq!(v["receipt_version"], lily::runs::RECEIPT_VERSION);
    assert_eq!(lily::runs::RECEIPT_VERSION, 1);
    let back: Receipt = serde_json::from_value(v).expect("reads back");
    assert_eq!(back.receipt_version, Some(1));
    let (value, old) = fixture("receipt-0.1.0-demo.json");
    assert_eq!(old.receipt_version, None, "a 0.1.0 receipt has no version");
    assert!(value.get("receipt_version").is_none());
}
