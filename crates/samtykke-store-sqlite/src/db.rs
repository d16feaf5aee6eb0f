//! The connections behind the SQLite store.
//!
//! * **One writer thread** owns the only writing connection. Every write is a
//!   whole store operation sent to it as one job; the thread runs all jobs
//!   that are waiting in one transaction (each job in its own savepoint, so a
//!   failing job undoes only itself), commits once, and only then answers
//!   each caller. That is group commit: one commit, and with
//!   `synchronous=FULL` one fsync, for a batch of operations, and nothing is
//!   acknowledged before its commit.
//! * **Readers** are a small pool of connections used directly on the
//!   calling thread: an indexed read in WAL mode takes microseconds and never
//!   waits for the writer, so handing it to another thread would cost more
//!   than the read.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use samtykke_core::store::{PoolStats, StoreError};
use tokio::sync::oneshot;

/// The most jobs one transaction takes.
const MAX_BATCH: usize = 512;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Maps a SQLite error: unique-key violations are conflicts, the rest means
/// the database is unavailable.
pub(crate) fn db_error(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        {
            return StoreError::Conflict(msg.clone().unwrap_or_else(|| e.to_string()));
        }
    }
    StoreError::Unavailable(e.to_string())
}

/// `?`-friendly conversion of rusqlite results.
pub(crate) trait OrUnavailable<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> OrUnavailable<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(db_error)
    }
}

/// How connections are set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Synchronous {
    Normal,
    Full,
}

fn open(path: &Path, synchronous: Synchronous) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .db()?;
    conn.busy_timeout(BUSY_TIMEOUT).db()?;
    conn.set_prepared_statement_cache_capacity(64);
    let sync = match synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;"
    ))
    .db()?;
    Ok(conn)
}

/// One write operation waiting for the writer thread.
trait WriteJob: Send {
    /// Runs the operation; false if it failed (its savepoint is undone).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch has committed (or failed to).
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

struct TypedJob<T, F> {
    op: Option<F>,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> WriteJob for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(op) = self.op.take() else {
            return false;
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| op(conn))).unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "a storage operation panicked".into(),
            ))
        });
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let answer = match (committed, self.outcome) {
            (Err(e), _) => Err(StoreError::Unavailable(e)),
            (Ok(()), Some(outcome)) => outcome,
            (Ok(()), None) => Err(StoreError::Unavailable("operation was not run".into())),
        };
        // The caller may have gone away (request cancelled): the write
        // stands either way.
        let _ = self.reply.send(answer);
    }
}

type Job = Box<dyn WriteJob>;

/// The writer thread plus the reader pool.
pub(crate) struct Database {
    path: PathBuf,
    synchronous: Synchronous,
    jobs: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
    readers_in_use: AtomicU32,
    max_idle_readers: u32,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.path)
            .field("synchronous", &self.synchronous)
            .finish_non_exhaustive()
    }
}

impl Database {
    pub(crate) fn open(
        path: PathBuf,
        synchronous: Synchronous,
        max_idle_readers: u32,
    ) -> Result<Self, StoreError> {
        let writer = open(&path, synchronous)?;
        // The writer touches index pages all over a large database (usage
        // records by consent id); keep more of them than the default 2 MB.
        writer.execute_batch("PRAGMA cache_size = -32768").db()?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(writer, queue))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(Self {
            path,
            synchronous,
            jobs,
            readers: Mutex::new(Vec::new()),
            readers_in_use: AtomicU32::new(0),
            max_idle_readers: max_idle_readers.max(1),
        })
    }

    /// Runs `op` in the writer's transaction and answers after the commit.
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(TypedJob {
            op: Some(op),
            outcome: None,
            reply,
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?
    }

    /// Runs `op` on a reader connection on this thread.
    pub(crate) fn read<T>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open(&self.path, self.synchronous)?,
        };
        self.readers_in_use.fetch_add(1, Ordering::Relaxed);
        let outcome = op(&conn);
        self.readers_in_use.fetch_sub(1, Ordering::Relaxed);
        let mut idle = self
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < self.max_idle_readers as usize {
            idle.push(conn);
        }
        outcome
    }

    /// Open connections: the writer plus the readers, idle or in use.
    pub(crate) fn stats(&self) -> PoolStats {
        let idle = u32::try_from(
            self.readers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .len(),
        )
        .unwrap_or(u32::MAX);
        let max = self.max_idle_readers + 1;
        let size = (idle + self.readers_in_use.load(Ordering::Relaxed) + 1).min(max);
        PoolStats {
            size,
            idle: idle.min(size),
            max,
        }
    }
}

fn run_writer(conn: Connection, queue: mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let committed = run_batch(&conn, &mut batch);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for job in batch {
            job.finish(committed.clone());
        }
    }
    // Every store handle is gone: fold the WAL back into the database file.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
}

fn run_batch(conn: &Connection, batch: &mut [Job]) -> Result<(), String> {
    let exec = |sql: &str| -> Result<(), String> {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    exec("BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        exec("SAVEPOINT job")?;
        if !job.run(conn) {
            exec("ROLLBACK TO job")?;
        }
        exec("RELEASE job")?;
    }
    exec("COMMIT")
}
