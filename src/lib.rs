//! Skiff: a lightweight Kubernetes distribution in one executable.

pub mod agent;
pub mod apiserver;
pub mod auth;
pub mod cidr;
pub mod cli;
pub mod client;
pub mod controllers;
pub mod events;
pub mod informers;
pub mod kubelet;
pub mod leader;
pub mod scheduler;
pub mod server;
pub mod store;
