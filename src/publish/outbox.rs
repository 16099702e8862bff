//! The durable outbox: an SQLite table of messages accepted but not yet acknowledged
//! by the broker.
//!
//! Why SQLite: it is the embedded database trusted for crash safety (atomic commits,
//! a write-ahead log that survives SIGKILL and power cuts), it is a single file under
//! the systemd `StateDirectory`, and rusqlite bundles it, so nothing needs installing.
//!
//! The row id (`INTEGER PRIMARY KEY AUTOINCREMENT`) is the delivery order. Memory holds
//! only counters; the payloads stay on disk until the publisher fetches a window.
//!
//! # A full or failing disk
//!
//! The files (database, write-ahead log and the reserve below) stay within
//! `max_bytes`: SQLite's `max_page_count` bounds the database, `journal_size_limit`
//! and the checkpoint interval bound the log, so a full outbox and a full file
//! system take the same path. When a batch cannot be written, older rows are
//! evicted in the documented order to make room and the batch is tried again; what
//! still cannot be stored is counted per class ([`Outbox::unstored`]) and the write
//! error is kept as the outbox's health ([`Outbox::write_error`]), logged once when
//! it starts and once when it ends. Nothing already on disk is given up, and
//! nothing here stops the daemon: it recovers by itself when space returns.
//!
//! On a file system that is truly full, evicting needs space too: the deletes go
//! to the write-ahead log first, and the checkpoint that lets the log start over
//! has to grow the database by the pages the log still holds. So the outbox keeps
//! a preallocated reserve file beside the database (`<file>-reserve`, see
//! `Layout` for its size). When a write fails with `SQLITE_FULL` and the page
//! bound is not what is full, it deletes the reserve, checkpoints into the space
//! that gives, holds the database at the pages it has now (so from here on the
//! page bound, not the file system, says "full"), evicts by priority, checkpoints
//! again and stores the batch. New messages then keep replacing older ones of
//! lower priority. After each write that succeeds it tries to make the reserve
//! again; once that works, space has returned and the database may grow to its
//! bound again. Both changes are logged once, and while the reserve is used up
//! [`Outbox::write_error`] says so.
//!
//! A delivered row whose delete cannot be committed is remembered in memory, left
//! out of every fetch and deleted by the next write that succeeds, so a failing
//! delete never sends an acknowledged message again while the process runs.

use super::reserve::{self, Reserve};
use super::{ClassCounts, MessageClass, Outgoing};
use crate::config_value::duration;
use crate::config_value::{duration_in_range, in_range};
use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bookkeeping bytes counted per row on top of payload and topic (row header, index
/// entry), so that many tiny messages are not "free" against `max_bytes`.
const ROW_OVERHEAD: u64 = 64;

/// The smallest database the page bound allows (schema, table, index and a few
/// rows): below it a tiny `max_bytes` bounds the accounted bytes only.
const MIN_DB_PAGES: u64 = 64;

/// Free pages (4 KiB each) left by delivered rows above which a drained outbox gives
/// them back to the file system: small enough that a drained backlog shrinks the
/// file, large enough that steady operation does not vacuum after every message.
const VACUUM_FREE_PAGES: u64 = 256;

/// How often a batch that hit a full disk is tried again after evicting older rows.
const MAX_ROOM_ROUNDS: u32 = 6;

/// Most pages the write-ahead log collects before a checkpoint moves them into the
/// database (SQLite's default is 1000). Kept small because on a full file system a
/// log that can start over costs no new space, while a long one needs the database
/// to grow by as much to be checkpointed at all.
const MAX_CHECKPOINT_PAGES: u64 = 256;

/// Bytes a write-ahead log frame adds to the page it holds (SQLite's frame header).
const WAL_FRAME_HEADER: u64 = 24;

/// Log frames one eviction transaction and the retried batch need on top of a
/// checkpoint: the table and index leaf pages of the evicted rows and their
/// parents, the freelist trunk, pointer-map pages and page 1. A batch is a few
/// messages, so 64 frames leave room to spare.
const EVICTION_FRAMES: u64 = 64;

/// Health text while the reserve is used up (see the module docs).
const RESERVE_IN_USE: &str = "its file system is full: the outbox reserve is used up, \
     so new messages replace older ones by the eviction order (free space on it)";

/// The `[outbox]` config section: where the durable queue lives and how big it may grow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// SQLite file. The systemd unit gives `StateDirectory=pvtherm`, hence the default
    /// `/var/lib/pvtherm/outbox.sqlite`. The parent directory is created if missing.
    pub path: PathBuf,
    /// Upper bound on stored messages in bytes (payload + topic + 64 bytes per row),
    /// and on the files on disk (database, write-ahead log and the reserve for a
    /// full file system; at least 256 KiB).
    /// When a new message does not fit, the oldest detections are dropped first, then
    /// snapshots, and defects only when nothing else is left. Default 256 MiB.
    pub max_bytes: u64,
    /// Messages older than this are dropped (and counted) instead of being delivered
    /// late. Default `"7days"`.
    #[serde(with = "duration")]
    pub max_age: Duration,
    /// SQLite `synchronous` level with the WAL journal: `"full"` (default) syncs the log
    /// on every commit, so an accepted message survives a power cut; `"normal"` syncs
    /// only at checkpoints: it never corrupts the file and survives a process crash,
    /// but a power cut may lose the last accepted messages. Choose `"normal"` only on
    /// storage where fsync is very slow and the box has a stable power supply.
    pub synchronous: Synchronous,
}

impl OutboxConfig {
    /// A size and an age the queue can work with; called by `Config::validate`
    /// and by [`Outbox::open`].
    pub(crate) fn validate(&self) -> Result<()> {
        if self.path.as_os_str().is_empty() {
            bail!("[outbox] path is empty: set the SQLite file, e.g. \"/var/lib/pvtherm/outbox.sqlite\"");
        }
        in_range("[outbox] max_bytes", self.max_bytes, 1..=1 << 40, " bytes")?;
        duration_in_range(
            "[outbox] max_age",
            self.max_age,
            Duration::from_millis(1)..=Duration::from_secs(3650 * 24 * 3600),
        )
    }
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            path: PathBuf::from("/var/lib/pvtherm/outbox.sqlite"),
            max_bytes: 256 * 1024 * 1024,
            max_age: Duration::from_secs(7 * 24 * 3600),
            synchronous: Synchronous::Full,
        }
    }
}

/// SQLite durability level, see [`OutboxConfig::synchronous`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync the write-ahead log on every commit: survives power loss.
    #[default]
    Full,
    /// fsync only at checkpoints: survives process crashes, not power loss.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "PRAGMA synchronous=FULL;",
            Synchronous::Normal => "PRAGMA synchronous=NORMAL;",
        }
    }
}

/// One row read back from the outbox, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Row id; increasing in acceptance order.
    pub(crate) id: i64,
    /// The message itself.
    pub message: Outgoing,
    /// When it was accepted (milliseconds since the Unix epoch).
    pub(crate) created_at_ms: i64,
}

/// The durable queue. Single connection; the publisher wraps it in a mutex shared by
/// the submitting threads and the delivery task.
pub struct Outbox {
    conn: Connection,
    path: PathBuf,
    max_bytes: u64,
    max_age: Duration,
    synchronous: Synchronous,
    depth: u64,
    bytes: u64,
    dropped: ClassCounts,
    /// Messages that could not be written at all (disk full or failing), per class.
    unstored: ClassCounts,
    /// Why the last write failed; `None` while writes succeed.
    write_error: Option<String>,
    /// Delivered rows whose delete is not committed yet (see the module docs).
    acked: BTreeSet<i64>,
    /// Space held back for evicting on a truly full file system (module docs).
    reserve: Reserve,
    /// The database's page bound from `max_bytes`, restored when the reserve is
    /// back.
    db_pages: u64,
}

/// How `max_bytes` is split between the files, so that together they stay within
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// The write-ahead log: an eighth of `max_bytes` (truncated back to that after
    /// each checkpoint).
    wal: u64,
    /// Pages the log collects before a checkpoint: half the log, within
    /// 8..=[`MAX_CHECKPOINT_PAGES`].
    checkpoint_pages: u64,
    /// The reserve file: what releasing it must make possible on a full file
    /// system, namely one checkpoint (growing the database by up to
    /// `checkpoint_pages` pages that are only in the log) and then one eviction
    /// with its retried batch ([`EVICTION_FRAMES`]), counted as log frames. That is
    /// 1.26 MiB with 4 KiB pages; at most an eighth of `max_bytes`.
    reserve: u64,
    /// The database's page bound: what is left.
    db_pages: u64,
}

impl Layout {
    /// The split for `max_bytes` with pages of `page` bytes.
    fn new(max_bytes: u64, page: u64) -> Layout {
        let wal = max_bytes / 8;
        let checkpoint_pages = (wal / page / 2).clamp(8, MAX_CHECKPOINT_PAGES);
        let reserve =
            ((checkpoint_pages + EVICTION_FRAMES) * (page + WAL_FRAME_HEADER)).min(max_bytes / 8);
        let db_pages = (max_bytes.saturating_sub(wal + reserve) / page).max(MIN_DB_PAGES);
        Layout {
            wal,
            checkpoint_pages,
            reserve,
            db_pages,
        }
    }
}

/// Classes the outbox sacrifices when full, in this order; anything else is dropped
/// (oldest first) only when none of these is left.
const EVICTION_ORDER: [MessageClass; 2] = [MessageClass::Detections, MessageClass::Snapshot];

impl Outbox {
    /// Opens (or creates) the outbox at `config.path`. A file that is not a valid
    /// SQLite database is moved aside to `<file>.corrupt-<unix seconds>` with a loud
    /// error log, and a fresh outbox is started: a damaged queue must not keep the
    /// daemon from detecting defects.
    pub fn open(config: &OutboxConfig) -> Result<Outbox> {
        config.validate()?;
        let path = config.path.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "cannot create the outbox directory {} (set [outbox] path to a writable place)",
                    dir.display()
                )
            })?;
        }
        let conn = match open_checked(&path, config.synchronous) {
            Ok(conn) => conn,
            Err(e) if is_corruption(&e) => {
                let aside = move_aside(&path)?;
                log::error!(
                    "outbox {} is corrupt ({e:#}); moved it to {} and started an empty outbox — \
                     messages in the old file are NOT delivered",
                    path.display(),
                    aside.display()
                );
                open_checked(&path, config.synchronous).with_context(|| {
                    format!("cannot create a fresh outbox at {}", path.display())
                })?
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open outbox {}", path.display()))
            }
        };
        let layout = bound_files(&conn, config.max_bytes)
            .with_context(|| format!("cannot bound outbox {}", path.display()))?;
        let (depth, bytes): (i64, i64) = conn
            .query_row(
                "SELECT count(*), coalesce(sum(size), 0) FROM outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .with_context(|| format!("cannot read outbox {}", path.display()))?;
        let mut outbox = Outbox {
            conn,
            path,
            max_bytes: config.max_bytes,
            max_age: config.max_age,
            synchronous: config.synchronous,
            depth: depth as u64,
            bytes: bytes as u64,
            dropped: ClassCounts::default(),
            unstored: ClassCounts::default(),
            write_error: None,
            acked: BTreeSet::new(),
            reserve: Reserve::new(&config.path, layout.reserve),
            db_pages: layout.db_pages,
        };
        if let Err(e) = outbox.reserve.acquire() {
            log::warn!(
                "outbox {}: cannot make its {} byte reserve {} ({e}); holding the \
                 database at its present size until there is room for it",
                outbox.path.display(),
                layout.reserve,
                outbox.reserve.path().display()
            );
            outbox.hold_database_size()?;
        }
        if outbox.depth > 0 {
            log::info!(
                "outbox {}: {} messages ({} bytes) waiting from a previous run",
                outbox.path.display(),
                outbox.depth,
                outbox.bytes
            );
        }
        // A full disk must not keep the daemon from starting: expiry is tried
        // again every minute, and the write error is in the health.
        outbox.expire()?;
        Ok(outbox)
    }

    /// Number of stored messages.
    pub fn depth(&self) -> u64 {
        self.depth
    }

    /// Accounted bytes of stored messages (see [`OutboxConfig::max_bytes`]).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Messages dropped since open (full or expired), per class.
    pub fn dropped(&self) -> ClassCounts {
        self.dropped
    }

    /// Messages that could not be stored since open (the disk was full or failing
    /// even after evicting older rows), per class. They are lost.
    pub fn unstored(&self) -> ClassCounts {
        self.unstored
    }

    /// Why the outbox cannot be written right now, or that its file system is full
    /// and new messages replace older ones (the reserve is used up); `None` while
    /// all is well. While it is set, [`Outbox::depth`] still counts the rows on
    /// disk.
    pub fn write_error(&self) -> Option<&str> {
        self.write_error
            .as_deref()
            .or((!self.reserve.is_held()).then_some(RESERVE_IN_USE))
    }

    /// Sets the database's page bound (see [`set_max_pages`]).
    fn set_max_pages(&self, pages: u64) -> Result<()> {
        set_max_pages(&self.conn, pages)
            .with_context(|| format!("cannot bound outbox {}", self.path.display()))
    }

    /// Bounds the database at the pages it has now: while its file system is full,
    /// the page bound then says "full" before SQLite needs the file to grow, and
    /// eviction makes room inside the file.
    fn hold_database_size(&self) -> Result<()> {
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        self.set_max_pages(pages.max(1) as u64)
    }

    /// Whether a write of about `want` bytes is refused by the page bound rather
    /// than by the file system: the database is within that much (plus an
    /// eviction) of its bound.
    fn at_page_bound(&self, want: u64) -> Result<bool> {
        let count = |sql: &str| -> Result<u64> {
            Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))?.max(0) as u64)
        };
        let (pages, max, page) = (
            count("PRAGMA page_count")?,
            count("PRAGMA max_page_count")?,
            count("PRAGMA page_size")?.max(512),
        );
        Ok(pages + want.div_ceil(page) + EVICTION_FRAMES >= max)
    }

    /// Gives the reserve's space to the database (see the module docs): deletes
    /// it, checkpoints into the freed space and holds the database at its size.
    /// Returns false when the reserve was already used up.
    fn release_reserve(&mut self) -> bool {
        if !self.reserve.release() {
            return false;
        }
        let checkpoint = self.let_log_start_over();
        let held = self.hold_database_size();
        log::warn!(
            "outbox {}: its file system is full; released the {} byte reserve and holds \
             the database at its size{}{} — new messages replace older ones by the \
             eviction order until there is room for the reserve again",
            self.path.display(),
            self.reserve.bytes(),
            checkpoint
                .err()
                .map(|e| format!(" (the checkpoint still failed: {e:#})"))
                .unwrap_or_default(),
            held.err()
                .map(|e| format!(" (could not bound it: {e:#})"))
                .unwrap_or_default(),
        );
        true
    }

    /// After a write that succeeded while the reserve is used up: makes it again
    /// if the file system has room now, and lets the database grow to its bound.
    fn restore_reserve(&mut self) {
        if self.reserve.is_held() || self.reserve.acquire().is_err() {
            return;
        }
        match self.set_max_pages(self.db_pages) {
            Ok(()) => log::warn!(
                "outbox {}: space returned on its file system; the {} byte reserve is \
                 back and the database may grow to [outbox] max_bytes again",
                self.path.display(),
                self.reserve.bytes()
            ),
            Err(e) => log::warn!(
                "outbox {}: the reserve is back, but the database stays at its size: {e:#}",
                self.path.display()
            ),
        }
    }

    /// Makes room for about `want` bytes after a write failed with `SQLITE_FULL`:
    /// releases the reserve when the file system (not the page bound) is full or
    /// when a checkpoint or the eviction needs space, evicts by the eviction order
    /// and checkpoints, so the log starts over for the retried write. Returns the
    /// bytes freed (0: nothing left to evict).
    fn make_room(&mut self, want: u64) -> Result<u64> {
        if self.reserve.is_held() && !self.at_page_bound(want)? {
            self.release_reserve();
        }
        if let Err(e) = self.let_log_start_over() {
            if is_full(&e) && self.release_reserve() {
                let _ = self.let_log_start_over();
            }
        }
        let freed = match self.evict_for_room(want) {
            Err(e) if is_full(&e) && self.release_reserve() => self.evict_for_room(want),
            other => other,
        }?;
        let _ = self.let_log_start_over();
        Ok(freed)
    }

    /// Stores messages in one transaction (one fsync), evicting older ones first if
    /// they do not fit. Returns the new row ids: empty when the disk could not take
    /// the batch even after evicting (the messages are counted in
    /// [`Outbox::unstored`], see the module docs). A message larger than `max_bytes`
    /// on its own is refused with an error and nothing of the batch is stored.
    pub fn push_all<'a>(
        &mut self,
        messages: impl IntoIterator<Item = &'a Outgoing>,
    ) -> Result<Vec<i64>> {
        let messages: Vec<&Outgoing> = messages.into_iter().collect();
        for m in &messages {
            let size = row_size(m);
            if size > self.max_bytes {
                bail!(
                    "{} message on {:?} is {} bytes, more than [outbox] max_bytes = {}",
                    m.class,
                    m.topic_suffix,
                    size,
                    self.max_bytes
                );
            }
        }
        let need: u64 = messages.iter().map(|m| row_size(m)).sum();
        let mut round = 0;
        let error = loop {
            let error = match self.try_push(&messages) {
                Ok(ids) => {
                    self.wrote();
                    return Ok(ids);
                }
                Err(e) => e,
            };
            if !is_full(&error) || round == MAX_ROOM_ROUNDS {
                break error;
            }
            // Full: make room by the eviction order, twice as much each round
            // (free space inside pages is fragmented), and try again.
            match self.make_room(need << round) {
                Ok(0) | Err(_) => break error,
                Ok(_) => round += 1,
            }
        };
        for m in &messages {
            self.unstored.add(m.class, 1);
        }
        self.write_failed(&error, "store new messages");
        Ok(Vec::new())
    }

    /// One attempt at [`Outbox::push_all`]: the batch in one transaction, evicting
    /// by the accounted bytes; the counters change only when it commits.
    fn try_push(&mut self, messages: &[&Outgoing]) -> Result<Vec<i64>> {
        let now = now_ms();
        let tx = self.conn.transaction()?;
        delete_acked(&tx, &self.acked)?;
        let mut ids = Vec::new();
        let (mut depth, mut bytes, mut dropped) = (self.depth, self.bytes, self.dropped);
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO outbox (class, topic_suffix, retain, created_at, size, payload) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for m in messages {
                let size = row_size(m);
                while bytes + size > self.max_bytes {
                    let (class, freed) = evict_one(&tx)?;
                    dropped.add(class, 1);
                    depth -= 1;
                    bytes -= freed;
                }
                insert.execute(params![
                    m.class.as_str(),
                    m.topic_suffix,
                    m.retain,
                    now,
                    size as i64,
                    m.payload
                ])?;
                ids.push(tx.last_insert_rowid());
                depth += 1;
                bytes += size;
            }
        }
        tx.commit()
            .with_context(|| format!("cannot commit to outbox {}", self.path.display()))?;
        self.acked.clear();
        self.log_drops(dropped, "outbox full");
        (self.depth, self.bytes, self.dropped) = (depth, bytes, dropped);
        Ok(ids)
    }

    /// Evicts rows by the eviction order until at least `want` accounted bytes are
    /// freed, in one transaction. Returns the bytes freed (0: nothing left to evict).
    fn evict_for_room(&mut self, want: u64) -> Result<u64> {
        let tx = self.conn.transaction()?;
        delete_acked(&tx, &self.acked)?;
        let (mut depth, mut bytes, mut dropped) = (self.depth, self.bytes, self.dropped);
        let mut freed = 0;
        while freed < want && depth > 0 {
            let (class, size) = evict_one(&tx)?;
            dropped.add(class, 1);
            depth -= 1;
            bytes -= size;
            freed += size;
        }
        tx.commit()?;
        self.acked.clear();
        self.log_drops(dropped, "outbox disk full");
        (self.depth, self.bytes, self.dropped) = (depth, bytes, dropped);
        Ok(freed)
    }

    /// Logs, per class, how many more messages `dropped` holds than counted so far.
    fn log_drops(&self, dropped: ClassCounts, why: &str) {
        for (class, n) in dropped.iter() {
            let before = self.dropped.get(class);
            if n > before {
                log::warn!(
                    "{why} ({} bytes max): dropped {} oldest {class} message(s)",
                    self.max_bytes,
                    n - before
                );
            }
        }
    }

    /// A write succeeded: ends a write-error state (logged once) and makes the
    /// reserve again if it was used up and there is room now.
    fn wrote(&mut self) {
        self.restore_reserve();
        if let Some(error) = self.write_error.take() {
            log::warn!(
                "outbox {} is writable again after: {error}; {} message(s) could not be \
                 stored meanwhile",
                self.path.display(),
                self.unstored.total()
            );
        }
    }

    /// A write failed: starts a write-error state, logged once per new error.
    fn write_failed(&mut self, error: &anyhow::Error, what: &str) {
        let text = format!("cannot {what}: {error:#}");
        if self.write_error.as_deref() != Some(text.as_str()) {
            log::error!(
                "outbox {}: {text} — new messages are counted as unstored until it can \
                 be written again (free space on its file system)",
                self.path.display()
            );
            self.write_error = Some(text);
        }
    }

    /// Up to `limit` messages with id greater than `after`, oldest first.
    pub fn fetch_after(&self, after: i64, limit: usize) -> Result<Vec<StoredMessage>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, class, topic_suffix, retain, created_at, payload FROM outbox \
             WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Vec<u8>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, class, topic_suffix, retain, created_at_ms, payload) = row?;
            if self.acked.contains(&id) {
                continue;
            }
            // An unknown class can only come from a newer version's file: deliver it
            // as detections (the most droppable) rather than refusing the whole queue.
            let class = MessageClass::from_name(&class).unwrap_or(MessageClass::Detections);
            out.push(StoredMessage {
                id,
                message: Outgoing {
                    topic_suffix,
                    payload,
                    class,
                    retain,
                },
                created_at_ms,
            });
        }
        Ok(out)
    }

    /// Deletes a delivered row. Returns false if it was already gone (evicted while in
    /// flight), which is not an error. A delete that cannot be committed (full or
    /// failing disk) is remembered and done by the next write that succeeds; the row
    /// is not fetched again meanwhile.
    ///
    /// The delete is committed without an fsync even with `synchronous = "full"`: a
    /// delete lost to a power cut only means the message is delivered again
    /// (at-least-once), and it halves the fsyncs per message. The next synced commit
    /// makes it durable anyway (the write-ahead log is sequential).
    pub fn remove(&mut self, id: i64) -> Result<bool> {
        if self.acked.contains(&id) {
            return Ok(false);
        }
        let size: Option<i64> = self
            .conn
            .prepare_cached("SELECT size FROM outbox WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()
            .with_context(|| format!("cannot read outbox {}", self.path.display()))?;
        let Some(size) = size else {
            return Ok(false);
        };
        self.acked.insert(id);
        self.depth -= 1;
        self.bytes -= size as u64;
        self.set_synchronous(Synchronous::Normal)?;
        let deleted = self.delete_acked_now();
        self.set_synchronous(self.synchronous)?;
        match deleted {
            Ok(()) => {
                // Compacting first: what it gives back may be the room the
                // reserve needs.
                if self.depth == 0 {
                    self.compact();
                }
                self.wrote();
            }
            Err(e) => self.write_failed(&e, "delete delivered messages"),
        }
        Ok(true)
    }

    /// Commits the deletes of the delivered rows in [`Outbox::acked`]; on a full
    /// disk once more after a checkpoint.
    fn delete_acked_now(&mut self) -> Result<()> {
        match self.delete_acked_once() {
            Err(e) if is_full(&e) => {
                if self.let_log_start_over().is_err() {
                    self.release_reserve();
                }
                self.delete_acked_once()
            }
            other => other,
        }?;
        self.acked.clear();
        Ok(())
    }

    /// One transaction deleting the rows in [`Outbox::acked`].
    fn delete_acked_once(&mut self) -> Result<()> {
        let tx = self.conn.transaction()?;
        delete_acked(&tx, &self.acked)?;
        tx.commit()?;
        Ok(())
    }

    /// Checkpoints so that the write-ahead log starts over from its beginning
    /// instead of growing: a delete needs log space too. On a full file system the
    /// checkpoint itself may fail (`SQLITE_FULL`: the database cannot grow by the
    /// pages only the log holds), which is the caller's cue to release the reserve.
    fn let_log_start_over(&self) -> Result<()> {
        step_to_end(&self.conn, "PRAGMA wal_checkpoint(PASSIVE)")
            .with_context(|| format!("cannot checkpoint outbox {}", self.path.display()))
    }

    /// Gives the pages of delivered rows back to the file system once there are
    /// many (after a backlog drained): incremental vacuum, then a checkpoint that
    /// truncates the log. Best effort: a failure leaves a larger file, nothing else.
    fn compact(&mut self) {
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap_or(0);
        if (free as u64) < VACUUM_FREE_PAGES {
            return;
        }
        let result = step_to_end(&self.conn, "PRAGMA incremental_vacuum").and_then(|()| {
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        });
        match result {
            Ok(()) => log::debug!(
                "outbox {}: gave {free} free pages back after the backlog drained",
                self.path.display()
            ),
            Err(e) => log::debug!("outbox {}: cannot compact: {e}", self.path.display()),
        }
    }

    fn set_synchronous(&self, level: Synchronous) -> Result<()> {
        self.conn
            .execute_batch(level.pragma())
            .with_context(|| format!("cannot set synchronous on outbox {}", self.path.display()))
    }

    /// Drops messages older than `max_age` (counted per class). Returns how many.
    /// A disk that cannot take the delete is reported in the health, not as an
    /// error: expiry is tried again later.
    pub(crate) fn expire(&mut self) -> Result<u64> {
        match self.try_expire() {
            Ok(n) => {
                self.wrote();
                Ok(n)
            }
            Err(e) => {
                self.write_failed(&e, "expire old messages");
                Ok(0)
            }
        }
    }

    /// One attempt at [`Outbox::expire`].
    fn try_expire(&mut self) -> Result<u64> {
        let cutoff = now_ms() - self.max_age.as_millis().min(i64::MAX as u128) as i64;
        let tx = self.conn.transaction()?;
        delete_acked(&tx, &self.acked)?;
        let mut removed = ClassCounts::default();
        let mut freed = 0u64;
        {
            let mut stmt =
                tx.prepare("DELETE FROM outbox WHERE created_at < ?1 RETURNING class, size")?;
            let rows = stmt.query_map([cutoff], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (class, size) = row?;
                let class = MessageClass::from_name(&class).unwrap_or(MessageClass::Detections);
                removed.add(class, 1);
                freed += size as u64;
            }
        }
        tx.commit()?;
        self.acked.clear();
        let n = removed.total();
        if n > 0 {
            log::warn!(
                "outbox: dropped {n} message(s) older than {} ([outbox] max_age)",
                humantime::format_duration(self.max_age)
            );
            for (class, k) in removed.iter() {
                self.dropped.add(class, k);
            }
            self.depth -= n;
            self.bytes -= freed;
        }
        Ok(n)
    }

    /// Moves the write-ahead log into the main file (called on clean shutdown so the
    /// state directory holds one self-contained file). Best effort: the log is as
    /// durable as the file, so a checkpoint that fails (a full disk) only leaves it
    /// for the next start, with a warning.
    pub(crate) fn checkpoint(&self) {
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            log::warn!(
                "cannot checkpoint outbox {} ({e}); its write-ahead log stays beside it \
                 and is read at the next start",
                self.path.display()
            );
        }
    }
}

/// Bytes the outbox at `path` takes on disk: the database, its write-ahead log
/// and its reserve (what [`OutboxConfig::max_bytes`] bounds).
pub fn files_size(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.to_owned(), PathBuf::from(wal), reserve::path_for(path)]
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}

/// Sets SQLite's bounds by the [`Layout`] of `max_bytes`, so that database,
/// write-ahead log and reserve together stay within it. Returns the layout.
fn bound_files(conn: &Connection, max_bytes: u64) -> Result<Layout> {
    let page = conn
        .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))?
        .max(512) as u64;
    let layout = Layout::new(max_bytes, page);
    set_max_pages(conn, layout.db_pages)?;
    conn.query_row(
        &format!("PRAGMA journal_size_limit = {}", layout.wal),
        [],
        |_| Ok(()),
    )?;
    conn.query_row(
        &format!("PRAGMA wal_autocheckpoint = {}", layout.checkpoint_pages),
        [],
        |_| Ok(()),
    )?;
    Ok(layout)
}

/// Sets the database's page bound (SQLite keeps it at least at the pages in use).
fn set_max_pages(conn: &Connection, pages: u64) -> Result<()> {
    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
    Ok(())
}

/// Opens the file, sets WAL + synchronous, checks integrity quickly and creates the
/// schema.
fn open_checked(path: &Path, sync: Synchronous) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // Takes effect on a new file (before the first table); an older file keeps
    // its mode until `VACUUM`, see `enable_incremental_vacuum`.
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("SQLite refused WAL journal mode (got {mode:?})");
    }
    conn.execute_batch(sync.pragma())?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        bail!(CorruptOutbox(check));
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS outbox (
             id           INTEGER PRIMARY KEY AUTOINCREMENT,
             class        TEXT    NOT NULL,
             topic_suffix TEXT    NOT NULL,
             retain       INTEGER NOT NULL,
             created_at   INTEGER NOT NULL,
             size         INTEGER NOT NULL,
             payload      BLOB    NOT NULL
         );
         CREATE INDEX IF NOT EXISTS outbox_class_id ON outbox (class, id);",
    )?;
    enable_incremental_vacuum(&conn, path);
    Ok(conn)
}

/// Converts a file made before incremental vacuum (auto_vacuum = 0) once, so
/// that a drained backlog gives its pages back. Best effort: it needs free space
/// about the size of the file, and without it the outbox works, only larger.
fn enable_incremental_vacuum(conn: &Connection, path: &Path) {
    let mode: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap_or(2);
    if mode == 2 {
        return;
    }
    match conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;") {
        Ok(()) => log::info!("outbox {}: converted to incremental vacuum", path.display()),
        Err(e) => log::warn!(
            "outbox {}: cannot convert to incremental vacuum ({e}); it works, \
             but does not shrink after a backlog",
            path.display()
        ),
    }
}

/// Runs `sql` until SQLite says it is done. Needed where one step is not the
/// whole statement: `PRAGMA incremental_vacuum` frees one page per step, and a
/// statement in autocommit mode commits only at its end (an error there is
/// lost when the statement is merely reset, as `query_row` does).
fn step_to_end(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// Whether a write failed because the disk (or the page bound) is full.
fn is_full(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::SqliteFailure(f, _)) if f.code == ErrorCode::DiskFull
        )
    })
}

/// Deletes the delivered rows whose delete failed earlier, inside `tx`.
fn delete_acked(tx: &rusqlite::Transaction<'_>, acked: &BTreeSet<i64>) -> Result<()> {
    let mut stmt = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
    for id in acked {
        stmt.execute([id])?;
    }
    Ok(())
}

/// Marker error: `PRAGMA quick_check` found damage.
#[derive(Debug, thiserror::Error)]
#[error("integrity check failed: {0}")]
struct CorruptOutbox(String);

fn is_corruption(e: &anyhow::Error) -> bool {
    if e.downcast_ref::<CorruptOutbox>().is_some() {
        return true;
    }
    matches!(
        e.downcast_ref::<rusqlite::Error>(),
        Some(rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

/// Renames the database (and its -wal/-shm files) to `<name>.corrupt-<unix seconds>`.
fn move_aside(path: &Path) -> Result<PathBuf> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{stamp}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside).with_context(|| {
        format!(
            "outbox {} is corrupt and could not be moved aside to {}; remove it by hand",
            path.display(),
            aside.display()
        )
    })?;
    for ext in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(ext);
        let side = PathBuf::from(side);
        if side.exists() {
            let mut to = aside.as_os_str().to_owned();
            to.push(ext);
            let _ = std::fs::rename(&side, PathBuf::from(to));
        }
    }
    Ok(aside)
}

/// Deletes the oldest row of the most droppable class present. Returns its class and
/// accounted size.
fn evict_one(tx: &rusqlite::Transaction<'_>) -> Result<(MessageClass, u64)> {
    let mut victim: Option<(i64, String, i64)> = None;
    for class in EVICTION_ORDER {
        victim = tx
            .prepare_cached(
                "SELECT id, class, size FROM outbox WHERE class = ?1 ORDER BY id LIMIT 1",
            )?
            .query_row([class.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        if victim.is_some() {
            break;
        }
    }
    if victim.is_none() {
        victim = tx
            .prepare_cached("SELECT id, class, size FROM outbox ORDER BY id LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
    }
    let Some((id, class, size)) = victim else {
        bail!("outbox accounting error: full but no row left to drop");
    };
    tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?
        .execute([id])?;
    let class = MessageClass::from_name(&class).unwrap_or(MessageClass::Detections);
    Ok((class, size as u64))
}

fn row_size(m: &Outgoing) -> u64 {
    (m.payload.len() + m.topic_suffix.len()) as u64 + ROW_OVERHEAD
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, max_bytes: u64) -> OutboxConfig {
        OutboxConfig {
            path: dir.join("state/outbox.sqlite"),
            max_bytes,
            ..OutboxConfig::default()
        }
    }

    fn msg(class: MessageClass, n: usize, len: usize) -> Outgoing {
        let mut payload = format!("{n:06}").into_bytes();
        payload.resize(len, b' ');
        Outgoing::new(class, "t", payload)
    }

    #[test]
    fn push_fetch_remove_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 1 << 20);
        let mut ob = Outbox::open(&cfg).unwrap();
        let ids = ob
            .push_all(&[
                msg(MessageClass::Detections, 1, 100),
                msg(MessageClass::Defect, 2, 100),
            ])
            .unwrap();
        assert_eq!(ob.depth(), 2);
        assert!(ob.remove(ids[0]).unwrap());
        assert!(!ob.remove(ids[0]).unwrap());
        ob.push_all(&[msg(MessageClass::Snapshot, 3, 50)]).unwrap();
        drop(ob); // no checkpoint: like a crash
        let ob = Outbox::open(&cfg).unwrap();
        assert_eq!(ob.depth(), 2);
        let rows = ob.fetch_after(0, 10).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].message.class, MessageClass::Defect);
        assert_eq!(rows[1].message.class, MessageClass::Snapshot);
        assert!(rows[1].message.retain);
        assert_eq!(ob.fetch_after(rows[0].id, 10).unwrap().len(), 1);
        assert_eq!(ob.bytes(), 2 * ROW_OVERHEAD + 2 + 150);
    }

    #[test]
    fn full_outbox_drops_detections_then_snapshots_then_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let row = 1000 + 1 + ROW_OVERHEAD;
        let mut ob = Outbox::open(&config(dir.path(), 6 * row)).unwrap();
        let batch = [
            msg(MessageClass::Defect, 0, 1000),
            msg(MessageClass::Detections, 1, 1000),
            msg(MessageClass::Snapshot, 2, 1000),
            msg(MessageClass::Detections, 3, 1000),
            msg(MessageClass::DefectThumbnail, 4, 1000),
            msg(MessageClass::DefectEvent, 5, 1000),
        ];
        ob.push_all(&batch).unwrap();
        assert_eq!(ob.depth(), 6);
        // Three more defects: both detections then the snapshot go.
        for n in 6..9 {
            ob.push_all(&[msg(MessageClass::Defect, n, 1000)]).unwrap();
        }
        assert_eq!(ob.dropped().get(MessageClass::Detections), 2);
        assert_eq!(ob.dropped().get(MessageClass::Snapshot), 1);
        // Only defect-like rows are left: the oldest of them goes.
        ob.push_all(&[msg(MessageClass::Defect, 9, 1000)]).unwrap();
        assert_eq!(ob.dropped().get(MessageClass::Defect), 1);
        assert_eq!(ob.dropped().total(), 4);
        let left: Vec<String> = ob
            .fetch_after(0, 100)
            .unwrap()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.message.payload[..6]).into_owned())
            .collect();
        assert_eq!(
            left,
            ["000004", "000005", "000006", "000007", "000008", "000009"]
        );
        assert_eq!(ob.depth(), 6);
        assert!(ob.bytes() <= 6 * row);
        // Too large on its own: refused, nothing dropped.
        assert!(ob
            .push_all(&[msg(MessageClass::Defect, 10, 10 * 1000)])
            .is_err());
        assert_eq!(ob.depth(), 6);
    }

    #[test]
    fn old_messages_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), 1 << 20);
        cfg.max_age = Duration::from_millis(50);
        let mut ob = Outbox::open(&cfg).unwrap();
        ob.push_all(&[
            msg(MessageClass::Detections, 1, 10),
            msg(MessageClass::Defect, 2, 10),
        ])
        .unwrap();
        std::thread::sleep(Duration::from_millis(80));
        ob.push_all(&[msg(MessageClass::Defect, 3, 10)]).unwrap();
        assert_eq!(ob.expire().unwrap(), 2);
        assert_eq!(ob.depth(), 1);
        assert_eq!(ob.dropped().get(MessageClass::Defect), 1);
        assert_eq!(ob.dropped().get(MessageClass::Detections), 1);
    }

    #[test]
    fn corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 1 << 20);
        std::fs::create_dir_all(cfg.path.parent().unwrap()).unwrap();
        std::fs::write(&cfg.path, vec![0x5au8; 8192]).unwrap();
        let mut ob = Outbox::open(&cfg).unwrap();
        assert_eq!(ob.depth(), 0);
        ob.push_all(&[msg(MessageClass::Defect, 1, 10)]).unwrap();
        let names: Vec<String> = std::fs::read_dir(cfg.path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("outbox.sqlite.corrupt-")),
            "{names:?}"
        );
    }

    #[test]
    fn files_stay_within_max_bytes_by_evicting_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 512 * 1024);
        let mut ob = Outbox::open(&cfg).unwrap();
        // Twice what fits: one defect for every nine detections.
        for n in 0..500 {
            let class = if n % 10 == 0 {
                MessageClass::Defect
            } else {
                MessageClass::Detections
            };
            let ids = ob.push_all(&[msg(class, n, 2000)]).unwrap();
            assert_eq!(
                ids.len(),
                1,
                "message {n} not stored: {:?}",
                ob.write_error()
            );
            assert!(files_size(&cfg.path) <= cfg.max_bytes, "after message {n}");
        }
        assert_eq!(ob.unstored().total(), 0);
        assert_eq!(ob.write_error(), None);
        assert_eq!(ob.dropped().get(MessageClass::Defect), 0);
        assert_eq!(ob.dropped().total() + ob.depth(), 500);
        let left = ob.fetch_after(0, 1000).unwrap();
        assert_eq!(left.len() as u64, ob.depth());
        assert_eq!(
            left.iter()
                .filter(|r| r.message.class == MessageClass::Defect)
                .count(),
            50
        );
    }

    #[test]
    fn a_drained_backlog_gives_its_space_back() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 64 << 20);
        let mut ob = Outbox::open(&cfg).unwrap();
        let mut ids = Vec::new();
        for n in 0..100 {
            let batch: Vec<Outgoing> = (0..20)
                .map(|k| msg(MessageClass::Detections, n * 20 + k, 2000))
                .collect();
            ids.extend(ob.push_all(&batch).unwrap());
        }
        // The reserve keeps its size: what shrinks is database and log.
        let reserve = ob.reserve.bytes();
        assert!(ob.reserve.is_held());
        let full = files_size(&cfg.path) - reserve;
        assert!(full > 4_000_000, "{full}");
        for id in ids {
            assert!(ob.remove(id).unwrap());
        }
        assert_eq!(ob.depth(), 0);
        let drained = files_size(&cfg.path) - reserve;
        assert!(drained < full / 8, "{full} bytes before, {drained} after");
        drop(ob);
        assert_eq!(Outbox::open(&cfg).unwrap().depth(), 0);
    }

    #[test]
    fn layout_keeps_the_files_within_max_bytes() {
        for max in [512 << 10, 8 << 20, 256 << 20, 1 << 40] {
            let l = Layout::new(max, 4096);
            assert!(l.wal + l.reserve + l.db_pages * 4096 <= max, "{max}: {l:?}");
            assert!(l.reserve <= max / 8, "{max}: {l:?}");
        }
        // The default: one full checkpoint interval plus an eviction, as log frames.
        let l = Layout::new(OutboxConfig::default().max_bytes, 4096);
        assert_eq!(l.checkpoint_pages, MAX_CHECKPOINT_PAGES);
        assert_eq!(l.reserve, (256 + EVICTION_FRAMES) * 4120);
    }

    #[test]
    fn config_parses_with_defaults() {
        let cfg: OutboxConfig =
            toml::from_str("path = \"/tmp/x.sqlite\"\nmax_age = \"2h\"\nsynchronous = \"normal\"")
                .unwrap();
        assert_eq!(cfg.max_age, Duration::from_secs(7200));
        assert_eq!(cfg.synchronous, Synchronous::Normal);
        assert_eq!(cfg.max_bytes, OutboxConfig::default().max_bytes);
        let err = toml::from_str::<OutboxConfig>("max_byte = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_byte"), "{err}");
    }

    #[test]
    fn documented_snippet_parses_with_every_key() {
        crate::config_value::test_support::check_documented_snippet::<OutboxConfig>(
            "outbox",
            include_str!("../../config/snippets/outbox.toml"),
        );
    }
}
