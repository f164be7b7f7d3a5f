//! History in the editor (issue 5): [`HistoryView`] scrubs through the document's
//! versions showing what each one changed, and [`BlameGutter`] says for every line who
//! changed it last, and when.
//!
//! Both read Automerge's history through the [`Document`] (`change_log`, `text_at`,
//! `blame`), which costs time in proportion to the document, so neither reads it per
//! frame: the view keeps a snapshot of the log and a few recent texts, and the gutter
//! recomputes only once the text changed and the change was committed.
//!
//! History is read only while Automerge is home (not detached to apply a peer's
//! changes on the network's thread); until then the screen says it is waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::style::Color;
use ropey::Rope;
use similar::{Algorithm, DiffOp, DiffTag, capture_diff_slices_deadline};
use tandem_doc::{ChangeHash, ChangeInfo, Document};

/// Texts of versions kept for stepping back and forth: each step needs the text
/// before and after one change, and the neighbour's text is one of them.
const CACHED_TEXTS: usize = 8;
/// ... unless the texts are large: past this many bytes only the two a step needs stay.
const CACHED_BYTES: usize = 64 << 20;

/// One version the view can show: the document once one more change of the log is in.
#[derive(Clone, Debug)]
pub struct Version {
    pub hash: ChangeHash,
    /// The author's name, or the start of their actor id when the change has none
    /// (shared by their versions: a long history has a few authors and many changes).
    pub author: Arc<str>,
    /// Milliseconds since the Unix epoch, by the author's clock.
    pub time_ms: i64,
    /// Heads of the log up to and including this change, when they are more than the
    /// change itself (concurrent edits); empty otherwise, which spares a long linear
    /// history an allocation per version. See [`Version::heads`].
    heads: Vec<ChangeHash>,
}

impl Version {
    /// Heads of the log up to and including this change: the version's text is the
    /// text at these heads.
    fn heads(&self) -> &[ChangeHash] {
        if self.heads.is_empty() { std::slice::from_ref(&self.hash) } else { &self.heads }
    }

    /// The 12-hex-digit id `tandem log` prints (and `tandem cat --at` takes).
    pub fn short_id(&self) -> String {
        self.hash.to_string()[..12].to_owned()
    }
}

/// How a char of [`Shown::merged`] came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Same,
    /// Inserted by the version shown.
    Added,
    /// Deleted by the version shown (it is in the text before it, not in its own).
    Removed,
}

#[derive(Clone, Copy, Debug)]
struct Mark {
    start: usize,
    end: usize,
    kind: Change,
}

/// A version ready to draw: its text, and its text with what it deleted put back in.
pub struct Shown {
    index: usize,
    /// The version's text (what restoring brings back).
    pub text: Arc<str>,
    /// The version's text with the text it deleted back where it was, so one screen
    /// shows both; [`Shown::kind_at`] tells them apart.
    pub merged: Rope,
    /// Added and removed char ranges of `merged`, in order.
    marks: Vec<Mark>,
    /// Chars the version inserted and deleted.
    pub inserted: usize,
    pub deleted: usize,
}

impl Shown {
    /// Whether the char at `pos` of [`Self::merged`] was added, removed or kept.
    pub fn kind_at(&self, pos: usize) -> Change {
        let i = self.marks.partition_point(|m| m.end <= pos);
        match self.marks.get(i) {
            Some(m) if m.start <= pos => m.kind,
            _ => Change::Same,
        }
    }

    /// A diff marker for line `line` of [`Self::merged`] (its line break included):
    /// `+` it gained text, `-` it lost text, `~` both, `None` untouched.
    pub fn line_marker(&self, line: usize) -> Option<char> {
        if line >= self.merged.len_lines() {
            return None;
        }
        let start = self.merged.line_to_char(line);
        let end = if line + 1 < self.merged.len_lines() {
            self.merged.line_to_char(line + 1)
        } else {
            self.merged.len_chars()
        };
        let first = self.marks.partition_point(|m| m.end <= start);
        let touching = self.marks[first..].iter().take_while(|m| m.start < end);
        let (added, removed) = touching
            .fold((false, false), |(a, r), m| (a || m.kind == Change::Added, r || m.kind == Change::Removed));
        match (added, removed) {
            (true, true) => Some('~'),
            (true, false) => Some('+'),
            (false, true) => Some('-'),
            (false, false) => None,
        }
    }

    /// Line of [`Self::merged`] holding the first change, if any.
    pub fn first_change_line(&self) -> Option<usize> {
        self.marks.first().map(|m| self.merged.char_to_line(m.start))
    }
}

/// The text at a set of heads, remembered for a few versions (see [`CACHED_TEXTS`]).
#[derive(Default)]
struct TextCache {
    entries: VecDeque<(Vec<ChangeHash>, Arc<str>)>,
}

impl TextCache {
    fn get(&mut self, doc: &Document, heads: &[ChangeHash]) -> Result<Arc<str>, String> {
        if let Some(i) = self.entries.iter().position(|(h, _)| h == heads)
            && let Some(entry) = self.entries.remove(i)
        {
            let text = Arc::clone(&entry.1);
            self.entries.push_back(entry);
            return Ok(text);
        }
        let text: Arc<str> = doc.text_at(heads).map_err(|e| e.to_string())?.into();
        self.entries.push_back((heads.to_vec(), Arc::clone(&text)));
        let bytes = |e: &VecDeque<(Vec<ChangeHash>, Arc<str>)>| e.iter().map(|(_, t)| t.len()).sum::<usize>();
        while self.entries.len() > CACHED_TEXTS
            || (self.entries.len() > 2 && bytes(&self.entries) > CACHED_BYTES)
        {
            self.entries.pop_front();
        }
        Ok(text)
    }
}

/// The history view's state: a snapshot of the log, the selected version, and the
/// texts read so far.
///
/// The log is read once, when the view opens, and again only when asked (`r`): history
/// only grows, so every version of the snapshot stays readable however the document
/// changes meanwhile (peers keep editing), and the version under the user's keys
/// never moves. Re-reading it on every change would cost a walk of the whole log per
/// keystroke of a peer on a long history. [`HistoryView::is_stale`] tells the screen
/// to say that newer versions exist.
pub struct HistoryView {
    versions: Vec<Version>,
    /// Heads before the first version (the genesis change every document starts from).
    base: Vec<ChangeHash>,
    /// The document's heads when the log was read.
    read_at: Vec<ChangeHash>,
    index: usize,
    texts: TextCache,
    shown: Option<Shown>,
    /// Why the selected version could not be read.
    error: Option<String>,
    /// First line of [`Shown::merged`] on screen.
    pub scroll: usize,
    /// Scroll to the change once the selected version is read.
    reveal: bool,
}

impl HistoryView {
    /// Read the log (pending edits are committed first, so the newest version is the
    /// text on screen) and select the newest version. The caller makes sure Automerge
    /// is home ([`Document::is_detached`]).
    pub fn open(doc: &mut Document) -> HistoryView {
        let (versions, base) = versions(&doc.change_log());
        let index = versions.len().saturating_sub(1);
        HistoryView {
            versions,
            base,
            read_at: sorted(doc.heads()),
            index,
            texts: TextCache::default(),
            shown: None,
            error: None,
            scroll: 0,
            reveal: true,
        }
    }

    /// Read the log again, keeping the selected version.
    pub fn reload(&mut self, doc: &mut Document) {
        let selected = self.versions.get(self.index).map(|v| v.hash);
        let (versions, base) = versions(&doc.change_log());
        self.index = selected
            .and_then(|h| versions.iter().position(|v| v.hash == h))
            .unwrap_or(versions.len().saturating_sub(1));
        self.versions = versions;
        self.base = base;
        self.read_at = sorted(doc.heads());
        self.shown = None;
        self.error = None;
    }

    /// Number of versions (the genesis change every document shares is not one).
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// Index of the selected version, oldest first.
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn version(&self) -> Option<&Version> {
        self.versions.get(self.index)
    }

    /// Select version `index` (clamped to the history).
    pub fn select(&mut self, index: usize) {
        let index = index.min(self.versions.len().saturating_sub(1));
        if index != self.index {
            self.index = index;
            self.error = None;
            self.reveal = true;
        }
    }

    /// Select the version `delta` steps newer (older when negative).
    pub fn step(&mut self, delta: isize) {
        self.select(self.index.saturating_add_signed(delta));
    }

    /// Scroll the text by `lines`.
    pub fn scroll_by(&mut self, lines: isize) {
        let max = self.shown.as_ref().map_or(0, |s| s.merged.len_lines().saturating_sub(1));
        self.scroll = self.scroll.saturating_add_signed(lines).min(max);
    }

    /// True when the document gained changes since the log was read.
    pub fn is_stale(&self, doc: &Document) -> bool {
        sorted(doc.heads()) != self.read_at
    }

    /// Read and diff the selected version unless done already (and Automerge is home),
    /// then scroll its first change into a view `height` lines high.
    pub fn prepare(&mut self, doc: &Document, height: usize) {
        let current = self.shown.as_ref().is_some_and(|s| s.index == self.index);
        if !current && self.error.is_none() && !doc.is_detached() {
            match self.read(doc, self.index) {
                Ok(shown) => self.shown = Some(shown),
                Err(e) => self.error = Some(e),
            }
        }
        let Some(line) = self.current().map(|s| s.first_change_line().unwrap_or(0)) else { return };
        if self.reveal {
            self.reveal = false;
            if line < self.scroll || line >= self.scroll + height.max(1) {
                self.scroll = line.saturating_sub(height / 3);
            }
        }
    }

    /// The selected version, once read.
    pub fn current(&self) -> Option<&Shown> {
        self.shown.as_ref().filter(|s| s.index == self.index)
    }

    /// Why the selected version could not be read, if it could not.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    fn read(&mut self, doc: &Document, index: usize) -> Result<Shown, String> {
        let heads = self.versions.get(index).ok_or("no such version")?.heads().to_vec();
        let before_heads = match index.checked_sub(1) {
            None => self.base.clone(),
            Some(i) => self.versions[i].heads().to_vec(),
        };
        let before =
            if before_heads.is_empty() { Arc::from("") } else { self.texts.get(doc, &before_heads)? };
        let after = self.texts.get(doc, &heads)?;
        let merged = merge(&before, &after);
        Ok(Shown {
            index,
            text: after,
            merged: Rope::from_str(&merged.text),
            marks: merged.marks,
            inserted: merged.inserted,
            deleted: merged.deleted,
        })
    }
}

fn sorted(heads: &[ChangeHash]) -> Vec<ChangeHash> {
    let mut heads = heads.to_vec();
    heads.sort();
    heads
}

/// The versions of a log (oldest first, in causal order) and the heads before the
/// first of them.
///
/// A version is the document once every change of the log up to its own is in. For a
/// linear history that is the text at the change (`tandem cat --at`); with concurrent
/// edits it also holds the other branch's earlier changes, so stepping moves through
/// one growing history instead of jumping between branches.
fn versions(log: &[ChangeInfo]) -> (Vec<Version>, Vec<ChangeHash>) {
    let mut heads: Vec<ChangeHash> = Vec::new();
    let mut base = Vec::new();
    let mut versions = Vec::with_capacity(log.len());
    let mut authors: HashMap<&str, Arc<str>> = HashMap::new();
    for c in log {
        heads.retain(|h| !c.deps.contains(h));
        heads.push(c.hash);
        heads.sort();
        // The genesis change (no deps) only creates the empty text.
        if c.deps.is_empty() {
            base.clone_from(&heads);
            continue;
        }
        let author = match &c.author {
            Some(name) => Arc::clone(authors.entry(name).or_insert_with(|| Arc::from(name.as_str()))),
            None => c.actor.to_hex_string().chars().take(8).collect::<String>().into(),
        };
        let own = if heads[..] == [c.hash] { Vec::new() } else { heads.clone() };
        versions.push(Version { hash: c.hash, author, time_ms: c.time_ms, heads: own });
    }
    (versions, base)
}

/// Lines changed together are diffed char by char when at least this share of their
/// chars stayed (as 2 * kept / (old + new)); less alike, they read better as old lines
/// gone and new lines come.
const ALIKE: f64 = 0.5;
/// Changed lines longer than this (old + new chars) are not diffed char by char.
const CHAR_DIFF_LIMIT: usize = 20_000;
/// Myers' diff is quadratic at worst; past this budget `similar` answers coarser.
const DIFF_BUDGET: Duration = Duration::from_millis(200);

/// `before` and `after` interleaved, for reading: the text of `after` with the text it
/// no longer has put back where it was, and where the added and removed parts are.
#[derive(Default)]
struct Merged {
    text: String,
    chars: usize,
    marks: Vec<Mark>,
    inserted: usize,
    deleted: usize,
}

impl Merged {
    fn push(&mut self, text: &str, kind: Change) {
        let n = text.chars().count();
        self.text.push_str(text);
        match kind {
            Change::Same => {}
            Change::Added => self.inserted += n,
            Change::Removed => self.deleted += n,
        }
        match self.marks.last_mut() {
            _ if kind == Change::Same || n == 0 => {}
            Some(last) if last.kind == kind && last.end == self.chars => last.end += n,
            _ => self.marks.push(Mark { start: self.chars, end: self.chars + n, kind }),
        }
        self.chars += n;
    }

    /// Old lines `old` replaced by `new`: char by char when they are alike.
    fn replace(&mut self, old: &str, new: &str, deadline: Option<Instant>) {
        let a: Vec<char> = old.chars().collect();
        let b: Vec<char> = new.chars().collect();
        if a.len() + b.len() <= CHAR_DIFF_LIMIT {
            let ops = capture_diff_slices_deadline(Algorithm::Myers, &a, &b, deadline);
            let kept: usize =
                ops.iter().map(|op| if let DiffOp::Equal { len, .. } = op { *len } else { 0 }).sum();
            if 2.0 * kept as f64 >= ALIKE * (a.len() + b.len()) as f64 {
                let text = |s: &[char]| s.iter().collect::<String>();
                for op in ops {
                    let (old, new) = (op.old_range(), op.new_range());
                    self.push(
                        &text(&a[old.clone()]),
                        if op.tag() == DiffTag::Equal { Change::Same } else { Change::Removed },
                    );
                    if op.tag() != DiffTag::Equal {
                        self.push(&text(&b[new]), Change::Added);
                    }
                }
                return;
            }
        }
        self.push(old, Change::Removed);
        self.push(new, Change::Added);
    }
}

/// Diff `before` and `after` by lines, then the lines changed together by chars.
fn merge(before: &str, after: &str) -> Merged {
    let deadline = Some(Instant::now() + DIFF_BUDGET);
    let old: Vec<&str> = before.split_inclusive('\n').collect();
    let new: Vec<&str> = after.split_inclusive('\n').collect();
    let mut merged =
        Merged { text: String::with_capacity(before.len().max(after.len())), ..Merged::default() };
    for op in capture_diff_slices_deadline(Algorithm::Myers, &old, &new, deadline) {
        let (o, n) = (old[op.old_range()].concat(), new[op.new_range()].concat());
        match op.tag() {
            DiffTag::Equal => merged.push(&o, Change::Same),
            DiffTag::Delete => merged.push(&o, Change::Removed),
            DiffTag::Insert => merged.push(&n, Change::Added),
            DiffTag::Replace => merged.replace(&o, &n, deadline),
        }
    }
    merged
}

/// Blame computed faster than this is not rationed (see [`BlameGutter::refresh`]).
const CHEAP_BLAME_MS: f64 = 5.0;

/// Who changed a line last, as the blame gutter shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineBlame {
    pub author: String,
    pub time_ms: i64,
}

/// What the gutter knows of a line of the current text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blamed<'a> {
    /// Its newest change.
    Change(&'a LineBlame),
    /// Changed since the blame was computed: by this user's uncommitted typing when
    /// `mine`, else by an edit whose change is on its way.
    Changed { mine: bool },
    /// No chars, so no change wrote it (the empty line after a final line break).
    Nobody,
}

/// The blame gutter: per line, the newest change that inserted one of its chars.
///
/// [`Document::blame`] reads Automerge's committed text, so it is recomputed only when
/// the text changed and nothing is pending (committing for it would cut the user's
/// typing into a change per frame), and, when it is slow, at most a tenth of the time. In
/// between, lines are matched to the last blame by their text (above an edit they
/// keep their number, below it they move by the lines it added), and lines that
/// match nothing are shown as being changed.
#[derive(Default)]
pub struct BlameGutter {
    /// Revision of the document the blame is for; `None` before the first.
    revision: Option<u64>,
    /// The text the blame is for.
    rope: Rope,
    lines: Vec<Option<LineBlame>>,
    /// No recomputing before this time (ms since the epoch).
    quiet_until: u64,
    /// Milliseconds the last computation took (it rations the next).
    took_ms: f64,
}

impl BlameGutter {
    /// Recompute if the text changed and can be blamed now.
    pub fn refresh(&mut self, doc: &mut Document, now_ms: u64) {
        let fresh = self.revision == Some(doc.revision());
        let settled = !doc.has_pending() && !doc.is_detached() && !doc.has_overlay();
        if fresh || !settled || (self.revision.is_some() && now_ms < self.quiet_until) {
            return;
        }
        let started = Instant::now();
        self.lines = doc
            .blame()
            .into_iter()
            .map(|c| {
                c.map(|c| LineBlame {
                    author: c.author.unwrap_or_else(|| c.actor.to_hex_string().chars().take(8).collect()),
                    time_ms: c.time_ms,
                })
            })
            .collect();
        self.rope = doc.rope().clone();
        self.revision = Some(doc.revision());
        self.took_ms = started.elapsed().as_secs_f64() * 1e3;
        // A cheap blame is redone whenever needed; a dear one takes at most a tenth of the time.
        let pause = if self.took_ms < CHEAP_BLAME_MS { 0.0 } else { self.took_ms * 10.0 };
        self.quiet_until = now_ms + pause as u64;
    }

    /// What is known of line `line` of the document's current text.
    pub fn line(&self, doc: &Document, line: usize) -> Blamed<'_> {
        let entry = |old: usize| match self.lines.get(old) {
            Some(Some(b)) => Blamed::Change(b),
            _ => Blamed::Nobody,
        };
        if self.revision == Some(doc.revision()) {
            return entry(line);
        }
        let rope = doc.rope();
        if line >= rope.len_lines() {
            return Blamed::Nobody;
        }
        let shift = rope.len_lines() as isize - self.rope.len_lines() as isize;
        for old in [Some(line), line.checked_add_signed(-shift)].into_iter().flatten() {
            if old < self.rope.len_lines() && self.rope.line(old) == rope.line(line) {
                return entry(old);
            }
        }
        if rope.line(line).len_chars() == 0 {
            return Blamed::Nobody;
        }
        Blamed::Changed { mine: doc.has_pending() }
    }
}

/// How long ago `time_ms` was, in at most four columns: `now`, `12m`, `5h`, `3d`, `2y`.
pub fn age(now_ms: u64, time_ms: i64) -> String {
    let secs = (now_ms as i64).saturating_sub(time_ms).max(0) / 1000;
    match secs {
        s if s < 60 => "now".into(),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s if s < 365 * 86_400 => format!("{}d", s / 86_400),
        s => format!("{}y", (s / (365 * 86_400)).min(999)),
    }
}

/// `time_ms` as a UTC date and time: `2025-01-02 13:45 UTC`.
pub fn utc(time_ms: i64) -> String {
    let t = tandem_doc::time::utc(time_ms);
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year, t.month, t.day, t.hour, t.minute)
}

/// A color for `author` from `palette`, the same for a name on every screen and run.
pub fn author_color(author: &str, palette: &[Color]) -> Color {
    // FNV-1a: stable across runs and builds, unlike the standard library's hasher.
    let hash = author
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    palette.get((hash % palette.len().max(1) as u64) as usize).copied().unwrap_or(Color::Reset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(m: &Merged) -> String {
        (0..m.chars)
            .map(|i| match m.marks.iter().find(|k| k.start <= i && i < k.end).map(|k| k.kind) {
                Some(Change::Added) => '+',
                Some(Change::Removed) => '-',
                _ => '.',
            })
            .collect()
    }

    #[test]
    fn alike_lines_are_diffed_by_chars_and_others_by_lines() {
        let m = merge("one\nhello world\nthree\n", "one\nhello, brave world\nthree\nfour\n");
        assert_eq!(m.text, "one\nhello, brave world\nthree\nfour\n");
        assert_eq!(kinds(&m), ".........+++++++.............+++++");
        assert_eq!((m.inserted, m.deleted), (12, 0));
        // Nothing alike: the old line goes, the new one comes.
        let m = merge("a\ntwo\nb\n", "a\n2\nb\n");
        assert_eq!(m.text, "a\ntwo\n2\nb\n");
        assert_eq!(kinds(&m), "..----++..");
        assert_eq!((m.inserted, m.deleted), (2, 4));
        assert_eq!(m.marks.len(), 2, "neighbouring marks of a kind are one");
    }

    #[test]
    fn times_read_as_dates_and_ages() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_618_812_418_219), "2021-04-19 06:06 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00 UTC");
        let now = 10_000_000_000;
        assert_eq!(age(now, now as i64 - 5_000), "now");
        assert_eq!(age(now, now as i64 - 5 * 60_000), "5m");
        assert_eq!(age(now, now as i64 - 3 * 3_600_000), "3h");
        assert_eq!(age(now, now as i64 - 40 * 86_400_000), "40d");
        assert_eq!(age(now, now as i64 + 9_000), "now", "a clock ahead of ours is not in the future");
        assert_eq!(age(now, i64::MIN), "999y");
    }

    #[test]
    fn an_author_keeps_their_color() {
        let palette = [Color::Red, Color::Green, Color::Blue];
        assert_eq!(author_color("ada", &palette), author_color("ada", &palette));
        assert_eq!(author_color("x", &[]), Color::Reset);
    }
}
