//! The commands as library functions: inspect, lint, audit, fix (and `config set`, restore),
//! bank status/rollback/select, extract, passwd, lockdown, and the findings they report.

pub mod audit;
pub mod bank;
pub mod extract;
pub mod findings;
pub mod fix;
pub mod inspect;
pub mod lint;
pub mod lockdown;
pub mod network;
pub mod passwd;
pub mod plan;
pub mod rescue;
pub mod restore;
pub mod restore_config;
