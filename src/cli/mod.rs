//! clap types for the command line and the config file; no logic.
