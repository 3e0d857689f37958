pub mod clock;
pub mod cron;
pub mod plan;
pub mod pool;
pub mod records;
pub mod scheduler;
pub mod state;
