//! Small shared helpers, one file per concern: files and durability
//! (`fs.rs`), randomness (`rand.rs`), the YAML guard (`yaml.rs`), time
//! formatting (`time.rs`) and digests (`digest.rs`).

mod digest;
mod fs;
mod rand;
mod retention;
mod time;
mod yaml;

pub use digest::sha256;
pub use fs::{
    Durability, FileIdentity, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, Stamp, atomic_write, create_dir_private, ensure_dir, private_open_options, sync_dir,
    write_atomic,
};
pub use rand::{random_hex, random_u64};
pub use retention::{Age, Retention};
pub use time::rfc3339;
pub use yaml::{MAX_YAML_DEPTH, yaml_nesting_exceeds};
