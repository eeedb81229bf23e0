//! Container logs: the CRI log format (`cri`) and the log driver process containerd's shim runs
//! for every container (`driver`), so logs keep flowing while skiff restarts. Never reads or
//! writes anything but log files and the driver's inherited pipes.

pub mod cri;
pub mod driver;
