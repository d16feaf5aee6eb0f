//! Samtykke: command line, configuration and start-up.

pub mod cli;
pub mod commands;
pub mod config;
pub mod janitor;
pub mod startup;
pub mod storage;
