//! Machine context for reading the figures: how long a 4 KiB write plus `fdatasync` takes in the
//! temporary directory with the CPUs otherwise idle and with one thread spinning. On some VMs a
//! thread blocked in `fdatasync` on an idle vCPU is woken only on the next timer tick (4 ms at
//! HZ=250), which dominates any one-write-at-a-time latency; runtimes that keep a thread spinning
//! (Go's scheduler, so etcd) do not pay it.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;

use crate::stats::{Summary, ms, summarize};

const ROUNDS: usize = 50;

/// `fdatasync` latencies, idle and with one spinning thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsyncProbe {
    pub idle: Summary,
    pub busy: Summary,
}

fn rounds(file: &std::fs::File) -> anyhow::Result<Summary> {
    let block = [0x5au8; 4096];
    let mut lat = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let t = Instant::now();
        file.write_at(&block, (i * block.len()) as u64)
            .context("writing the probe file")?;
        file.sync_data().context("fdatasync of the probe file")?;
        lat.push(ms(t.elapsed()));
    }
    Ok(summarize(&lat))
}

/// Runs the probe (blocking; about half a second on a slow disk).
pub fn fsync_probe() -> anyhow::Result<FsyncProbe> {
    let file = tempfile::tempfile().context("creating the probe file")?;
    let idle = rounds(&file)?;
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    let busy = rounds(&file);
    stop.store(true, Ordering::Relaxed);
    let _ = spinner.join();
    Ok(FsyncProbe { idle, busy: busy? })
}
