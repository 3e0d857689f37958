pub mod clock;
pub mod plan;
pub mod pool;
pub mod records;
pub mod scheduler;
pub mod state;
pub mod store;
