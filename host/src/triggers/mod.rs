pub mod cron;
pub mod clock;
pub mod plan;
pub mod records;
pub mod scheduler;
pub mod state;
pub mod pool;
