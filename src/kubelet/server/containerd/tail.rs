//! Following a container's CRI log file as it grows, across rotations (a new file under the
//! same path), one whole line at a time: `kubectl logs -f` and `kubectl attach` read new output
//! through it. Reads only what was appended since the last poll.

use std::io::{self, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// The most one poll reads.
const READ_CHUNK: u64 = 256 * 1024;

/// A followed log file.
pub(super) struct LogTail {
    path: PathBuf,
    inode: Option<u64>,
    offset: u64,
    pending: Vec<u8>,
}

impl LogTail {
    /// Follows `path` from where it ends now.
    pub(super) async fn at_end(path: PathBuf) -> LogTail {
        let len = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
        LogTail::at(path, len).await
    }

    /// Follows `path` from byte `offset` of the file it names now.
    pub(super) async fn at(path: PathBuf, offset: u64) -> LogTail {
        let inode = tokio::fs::metadata(&path).await.ok().map(|m| m.ino());
        LogTail {
            path,
            inode,
            offset,
            pending: Vec::new(),
        }
    }

    /// The whole lines written since the last call (at most [`READ_CHUNK`] more bytes).
    pub(super) async fn poll(&mut self) -> io::Result<Vec<u8>> {
        let mut file = match tokio::fs::File::open(&self.path).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let meta = file.metadata().await?;
        if self.inode != Some(meta.ino()) || meta.len() < self.offset {
            // Rotated: the path names a new file, read from its start.
            self.inode = Some(meta.ino());
            self.offset = 0;
            self.pending.clear();
        }
        if meta.len() > self.offset {
            file.seek(SeekFrom::Start(self.offset)).await?;
            let mut fresh = Vec::new();
            file.take(READ_CHUNK).read_to_end(&mut fresh).await?;
            self.offset += fresh.len() as u64;
            self.pending.extend_from_slice(&fresh);
        }
        let whole = self
            .pending
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        Ok(self.pending.drain(..whole).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_tail_starts_at_the_end_and_follows_whole_lines_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, b"old\n").unwrap();
        let mut tail = LogTail::at_end(path.clone()).await;
        assert_eq!(tail.poll().await.unwrap(), b"");
        let append = |bytes: &[u8]| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(bytes).unwrap();
        };
        append(b"new\npart");
        assert_eq!(tail.poll().await.unwrap(), b"new\n");
        append(b"ial\n");
        assert_eq!(tail.poll().await.unwrap(), b"partial\n");
        std::fs::rename(&path, dir.path().join("0.log.1")).unwrap();
        std::fs::write(&path, b"rotated\n").unwrap();
        assert_eq!(tail.poll().await.unwrap(), b"rotated\n");
    }

    #[tokio::test]
    async fn a_tail_from_an_offset_reads_on_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, b"seen\nnot yet\n").unwrap();
        let mut tail = LogTail::at(path, 5).await;
        assert_eq!(tail.poll().await.unwrap(), b"not yet\n");
        assert_eq!(tail.poll().await.unwrap(), b"");
    }
}
