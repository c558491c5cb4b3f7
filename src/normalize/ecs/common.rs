//! Building blocks shared by every mapping: a document builder, typed getters that skip
//! wrong-typed input, and the value normalisations (timestamps, IPs, durations, severities).

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// A null to stand in for a missing object.
pub static NULL: Value = Value::Null;

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "8.17.0";

/// A dotted document path: static for literal paths (no allocation), owned otherwise.
pub type Path = Cow<'static, str>;

/// What can name a path: literals, owned strings, and borrowed strings (copied).
pub trait IntoPath {
    fn into_path(self) -> Path;
}

impl IntoPath for &'static str {
    fn into_path(self) -> Path {
        Cow::Borrowed(self)
    }
}

impl IntoPath for String {
    fn into_path(self) -> Path {
        Cow::Owned(self)
    }
}

impl IntoPath for &String {
    fn into_path(self) -> Path {
        Cow::Owned(self.clone())
    }
}

/// An ECS document under construction. Paths are dotted (`source.geo.city_name`); empty
/// strings and nulls are never written, so mappings can pass optional input straight in.
///
/// Writes are collected flat and the nested objects are built once in [`Doc::finish`]: each
/// object key is allocated and inserted once, whatever the number of writes below it. A later
/// write to the same path replaces an earlier one; writes below a path whose value is an
/// object merge into it (they win over its entries).
pub struct Doc<'a> {
    entries: Vec<(Path, Val<'a>)>,
    related_user: Vec<Cow<'a, str>>,
    related_ip: Vec<Cow<'a, str>>,
    related_hosts: Vec<Cow<'a, str>>,
    vendor: Option<VendorCopy>,
}

/// A written value: borrowed from the record (no copy until needed) or owned JSON.
pub enum Val<'a> {
    Str(&'a str),
    /// A short list of strings (`event.type`), kept inline: `len` items of `items`.
    Strs {
        items: [&'a str; 3],
        len: u8,
    },
    /// A list of strings, borrowed where they come from the record (`related.*`).
    List(Vec<Cow<'a, str>>),
    Json(Value),
}

impl Val<'_> {
    fn into_value(self) -> Value {
        match self {
            Val::Str(s) => Value::String(s.to_string()),
            Val::Strs { items, len } => Value::Array(
                items[..usize::from(len)]
                    .iter()
                    .map(|s| Value::String((*s).to_string()))
                    .collect(),
            ),
            Val::List(list) => Value::Array(list.into_iter().map(|s| Value::String(s.into_owned())).collect()),
            Val::Json(v) => v,
        }
    }

    /// Write the value as JSON.
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Val::Str(s) => write_str(out, s),
            Val::Strs { items, len } => write_strs(out, items[..usize::from(*len)].iter().map(|s| &**s)),
            Val::List(list) => write_strs(out, list.iter().map(|s| &**s)),
            Val::Json(v) => write_value(out, v),
        }
    }

    fn is_object(&self) -> bool {
        matches!(self, Val::Json(Value::Object(_)))
    }
}

/// Which part of the record to keep under a vendor path, copied (borrowed input) or moved
/// (owned input) once the mapping has read what it needs.
#[derive(Clone, Debug)]
pub struct VendorCopy {
    /// Dotted path of the copy in the document.
    pub path: Path,
    /// `true`: `properties` of the record; `false`: the whole record.
    pub properties: bool,
    /// How many levels of keys are converted to snake_case (0: keys untouched).
    pub depth: usize,
}

impl<'a> Doc<'a> {
    pub fn new() -> Self {
        Doc {
            entries: Vec::with_capacity(128),
            related_user: Vec::new(),
            related_ip: Vec::new(),
            related_hosts: Vec::new(),
            vendor: None,
        }
    }

    /// Keep the record's `properties` (or the whole record) under `path`, keys snake_cased
    /// `depth` levels deep.
    pub fn keep(&mut self, path: impl IntoPath, properties: bool, depth: usize) {
        self.vendor = Some(VendorCopy {
            path: path.into_path(),
            properties,
            depth,
        });
    }

    /// The vendor copy to make, if any.
    pub fn take_vendor(&mut self) -> Option<VendorCopy> {
        self.vendor.take()
    }

    /// Insert a vendor copy at a path; fields written below that path win over its entries.
    pub fn merge(&mut self, path: Path, value: Value) {
        // Placed first so that any write at or below the path is applied after it.
        self.entries.insert(0, (path, Val::Json(value)));
    }

    /// Write `value` at a dotted path.
    pub fn put(&mut self, path: impl IntoPath, value: Value) {
        if value.is_null() || matches!(&value, Value::String(s) if s.is_empty()) {
            return;
        }
        self.entries.push((path.into_path(), Val::Json(value)));
    }

    /// Write a string if there is one (borrowed: copied only when the document is built).
    pub fn put_str(&mut self, path: impl IntoPath, value: Option<&'a str>) {
        if let Some(v) = value {
            if !v.is_empty() {
                self.entries.push((path.into_path(), Val::Str(v)));
            }
        }
    }

    /// Write an owned string if there is one.
    pub fn put_string(&mut self, path: impl IntoPath, value: Option<String>) {
        if let Some(v) = value {
            if !v.is_empty() {
                self.entries.push((path.into_path(), Val::Json(Value::String(v))));
            }
        }
    }

    /// Write a list of strings (`event.category`, `event.type`).
    pub fn put_list(&mut self, path: impl IntoPath, values: &[&'a str]) {
        match values.len() {
            0 => {}
            len @ 1..=3 => {
                let mut items = [""; 3];
                items[..len].copy_from_slice(values);
                self.entries
                    .push((path.into_path(), Val::Strs { items, len: len as u8 }));
            }
            _ => {
                let list = values.iter().map(|v| Value::String((*v).to_string())).collect();
                self.entries.push((path.into_path(), Val::Json(Value::Array(list))));
            }
        }
    }

    /// Write an integer if there is one.
    pub fn put_i64(&mut self, path: impl IntoPath, value: Option<i64>) {
        if let Some(v) = value {
            self.entries.push((path.into_path(), Val::Json(Value::from(v))));
        }
    }

    /// Write a boolean if there is one.
    pub fn put_bool(&mut self, path: impl IntoPath, value: Option<bool>) {
        if let Some(v) = value {
            self.entries.push((path.into_path(), Val::Json(Value::Bool(v))));
        }
    }

    /// Write an IP address (normalised, port stripped) and remember it for `related.ip`.
    /// Returns the port when the input carried one.
    pub fn put_ip(&mut self, path: impl IntoPath, value: Option<&'a str>) -> Option<u16> {
        let (text, port) = value.and_then(canonical_ip)?;
        push_unique(&mut self.related_ip, Some(text.clone()));
        self.put_cow(path, text);
        port
    }

    /// Write a string borrowed from the record or computed.
    pub fn put_cow(&mut self, path: impl IntoPath, value: Cow<'a, str>) {
        match value {
            Cow::Borrowed(s) => self.put_str(path, Some(s)),
            Cow::Owned(s) => self.put_string(path, Some(s)),
        }
    }

    /// [`Doc::relate_ip`] for an address text already normalised.
    pub fn relate_ip_text(&mut self, ip: Cow<'a, str>) {
        push_unique(&mut self.related_ip, Some(ip));
    }

    pub fn relate_user(&mut self, user: Option<&'a str>) {
        push_unique(&mut self.related_user, user.map(Cow::Borrowed));
    }

    /// [`Doc::relate_user`] for a name that does not live as long as the record.
    pub fn relate_user_owned(&mut self, user: &str) {
        push_unique(&mut self.related_user, Some(Cow::Owned(user.to_string())));
    }

    pub fn relate_ip(&mut self, ip: &str) {
        push_unique(&mut self.related_ip, Some(Cow::Owned(ip.to_string())));
    }

    pub fn relate_host(&mut self, host: Option<&'a str>) {
        push_unique(&mut self.related_hosts, host.map(Cow::Borrowed));
    }

    /// [`Doc::relate_host`] for a name that does not live as long as the record.
    pub fn relate_host_owned(&mut self, host: &str) {
        push_unique(&mut self.related_hosts, Some(Cow::Owned(host.to_string())));
    }

    /// Whether something was written at or below this top-level key.
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(p, _)| under(p, key))
    }

    /// Whether something was written at or below this path of keys.
    pub fn has_path(&self, path: &[&str]) -> bool {
        self.entries.iter().any(|(p, _)| under_parts(p, path))
    }

    /// Add `related.*` and return the indices of the writes in `entries`, sorted by path, the
    /// last of equal paths only.
    fn sorted_order(&mut self) -> Vec<usize> {
        self.sorted_shape().0
    }

    /// [`Doc::sorted_order`], with the key of the document's shape in [`ORDER_CACHE`] and the
    /// skeleton cached for it, if any (`None`: not cached).
    #[allow(clippy::type_complexity)]
    fn sorted_shape(&mut self) -> (Vec<usize>, Option<(u64, Option<std::rc::Rc<Skeleton>>)>) {
        let user = std::mem::take(&mut self.related_user);
        let ip = std::mem::take(&mut self.related_ip);
        let hosts = std::mem::take(&mut self.related_hosts);
        for (path, list) in [("related.user", user), ("related.ip", ip), ("related.hosts", hosts)] {
            if !list.is_empty() {
                self.entries.push((Cow::Borrowed(path), Val::List(list)));
            }
        }
        let entries = &self.entries;
        ORDER_CACHE.with(|cache| match cache.try_borrow_mut() {
            Ok(mut cache) => {
                let (order, key, skeleton) = cache.order(entries);
                (order, Some((key, skeleton)))
            }
            // Not reentrant; computing the order directly keeps it correct if it ever were.
            Err(_) => (path_order(entries), None),
        })
    }

    /// Add `related.*` and return the writes sorted by path, the last of equal paths only.
    fn sorted_entries(&mut self) -> Vec<(Path, Val<'a>)> {
        let order = self.sorted_order();
        order.into_iter().map(|i| self.take_entry(i)).collect()
    }

    /// Move a write out of `entries` (an empty one is left in its place).
    fn take_entry(&mut self, i: usize) -> (Path, Val<'a>) {
        std::mem::replace(&mut self.entries[i], (Cow::Borrowed(""), Val::Str("")))
    }

    /// Finish the document: write `related.*` and build the nested objects.
    pub fn finish(mut self) -> Value {
        let entries = self
            .sorted_entries()
            .into_iter()
            .map(|(p, v)| (p, v.into_value()))
            .collect();
        let mut root = Map::new();
        build(&mut root, entries, 0);
        Value::Object(root)
    }

    /// Serialize the document as JSON, byte for byte what `serde_json::to_vec` gives for
    /// [`Doc::finish`] with the vendor copy merged, without building it: `vendor` is written
    /// from the record (keys snake_cased `depth` levels deep).
    pub fn write_json(mut self, out: &mut Vec<u8>, vendor: Option<(Path, &Value, usize)>) {
        let (order, cached) = self.sorted_shape();
        // Cases the streaming writer does not handle go through `build` (same output).
        let slow = {
            let entries = &self.entries;
            order.windows(2).any(|w| {
                let (a, b) = (&entries[w[0]], &entries[w[1]]);
                a.1.is_object() && b.0 != a.0 && under(&b.0, &a.0)
            }) || vendor.as_ref().is_some_and(|(path, _, _)| {
                order.iter().any(|&i| {
                    let p = &entries[i].0;
                    under(p, path) && (p.len() <= path.len() + 1 || p[path.len() + 1..].contains('.'))
                })
            })
        };
        if slow {
            let entries = order.into_iter().map(|i| self.take_entry(i)).collect();
            return self.write_json_slow(out, entries, vendor);
        }
        // What the document writes around its values depends on its paths only: made once
        // per document shape.
        let vendor_path = vendor.as_ref().map(|(p, _, _)| &**p);
        let skeleton = match cached
            .as_ref()
            .and_then(|(_, s)| s.clone())
            .filter(|s| s.vendor_path.as_deref() == vendor_path)
        {
            Some(s) => s,
            None => {
                let s = std::rc::Rc::new(Skeleton::new(&self.entries, order, vendor_path));
                if let Some((key, _)) = cached {
                    ORDER_CACHE.with(|c| {
                        if let Ok(mut c) = c.try_borrow_mut() {
                            c.keep_skeleton(key, s.clone());
                        }
                    });
                }
                s
            }
        };
        // Writes directly below the copy (Defender's envelope fields) are merged into it.
        let extra_values: Vec<Value> = skeleton
            .extras
            .iter()
            .map(|(i, _)| self.take_entry(*i).1.into_value())
            .collect();
        let extra: Vec<(&str, &Value)> = skeleton
            .extras
            .iter()
            .zip(&extra_values)
            .map(|((_, k), v)| (&**k, v))
            .collect();
        for &(ei, from, to) in &skeleton.items {
            out.extend_from_slice(&skeleton.bytes[from as usize..to as usize]);
            match &vendor {
                Some((_, source, depth)) if ei == Skeleton::VENDOR => {
                    SNAKE_CACHE.with(|cache| match cache.try_borrow_mut() {
                        Ok(mut cache) => {
                            let mut keys = Vec::with_capacity(64);
                            write_snake(out, source, *depth, &extra, &mut keys, &mut cache);
                            cache.end_document();
                        }
                        // Not reentrant; a fresh cache keeps it correct if it ever were.
                        Err(_) => {
                            let mut keys = Vec::new();
                            write_snake(out, source, *depth, &extra, &mut keys, &mut SnakeCache::default());
                        }
                    });
                }
                _ => {
                    if let Some((_, v)) = self.entries.get(ei) {
                        v.write(out);
                    }
                }
            }
        }
        out.extend_from_slice(&skeleton.bytes[skeleton.tail as usize..]);
    }

    fn write_json_slow(
        &mut self,
        out: &mut Vec<u8>,
        entries: Vec<(Path, Val<'a>)>,
        vendor: Option<(Path, &Value, usize)>,
    ) {
        let mut entries: Vec<(Path, Value)> = entries.into_iter().map(|(p, v)| (p, v.into_value())).collect();
        if let Some((path, source, depth)) = vendor {
            // First, so that writes at or below the path win (as `merge` does).
            entries.insert(0, (path, snake_keys(source, depth)));
        }
        entries.sort_by(|a, b| cmp_path(&a.0, &b.0));
        let mut root = Map::new();
        build(&mut root, entries, 0);
        write_value(out, &Value::Object(root));
    }
}

/// The indices of `entries` sorted by path, the last of equal paths only.
fn path_order(entries: &[(Path, Val<'_>)]) -> Vec<usize> {
    let n = entries.len();
    // Sort numbers that hold the first 14 bytes of the path (ordered like the path) above
    // the entry's index: plain integer sorting, which decides nearly every comparison.
    // Paths that share those 14 bytes are then ordered by their full text (ties by index
    // keep the last write last).
    let mut order: Vec<u128> = entries
        .iter()
        .enumerate()
        .map(|(i, (p, _))| path_key(p) | (i as u128 & 0xFFFF))
        .collect();
    order.sort_unstable();
    let index = |k: u128| (k & 0xFFFF) as usize;
    let wide = n > 0xFFFF;
    if wide {
        // Indices do not fit: sort by path text, stably (not seen in practice).
        order = (0..n as u128).collect();
        order.sort_by(|a, b| cmp_path(&entries[*a as usize].0, &entries[*b as usize].0));
    } else {
        let mut i = 0;
        while i < n {
            let mut j = i + 1;
            while j < n && order[j] >> 16 == order[i] >> 16 {
                j += 1;
            }
            if j - i > 1 {
                order[i..j].sort_by(|a, b| {
                    cmp_path(&entries[index(*a)].0, &entries[index(*b)].0).then(index(*a).cmp(&index(*b)))
                });
            }
            i = j;
        }
    }
    let mut out: Vec<usize> = Vec::with_capacity(n);
    let mut last_prefix = None;
    for k in order {
        let (i, prefix) = if wide {
            (k as usize, None)
        } else {
            (index(k), Some(k >> 16))
        };
        // Equal paths are adjacent, and have equal sort prefixes.
        match out.last_mut() {
            Some(last) if (wide || prefix == last_prefix) && entries[*last].0 == entries[i].0 => *last = i,
            _ => out.push(i),
        }
        last_prefix = prefix;
    }
    out
}

/// What a document writes around its values, given its paths in order and its vendor path:
/// the bytes before each value (closing and opening objects, commas, keys) and after the last.
struct Skeleton {
    vendor_path: Option<Box<str>>,
    /// Writes merged into the vendor copy: entry index, key below the copy.
    extras: Vec<(usize, Box<str>)>,
    /// Per value in order: entry index ([`Skeleton::VENDOR`]: the vendor copy) and the range of
    /// `bytes` written before it.
    items: Vec<(usize, u32, u32)>,
    bytes: Vec<u8>,
    /// Where the closing bytes start in `bytes`.
    tail: u32,
}

impl Skeleton {
    const VENDOR: usize = usize::MAX;

    fn new(entries: &[(Path, Val<'_>)], mut order: Vec<usize>, vendor_path: Option<&str>) -> Self {
        const VENDOR: usize = Skeleton::VENDOR;
        let mut vendor_at: Option<usize> = None;
        let mut extras: Vec<(usize, Box<str>)> = Vec::new();
        if let Some(path) = vendor_path {
            let pos = order.partition_point(|&i| cmp_path(&entries[i].0, path) == std::cmp::Ordering::Less);
            let mut end = pos;
            while order.get(end).is_some_and(|&i| under(&entries[i].0, path)) {
                end += 1;
            }
            for i in order.drain(pos..end) {
                extras.push((i, entries[i].0[path.len() + 1..].into()));
            }
            order.insert(pos, VENDOR);
            vendor_at = Some(pos);
        }
        let path_at = |i: usize| -> &str {
            if i == VENDOR {
                vendor_path.unwrap_or("")
            } else {
                &entries[i].0
            }
        };
        // A non-object leaf that also has writes below it gives way to them (as in `build`).
        let mut i = 0;
        while i + 1 < order.len() {
            if vendor_at != Some(i) && under(path_at(order[i + 1]), path_at(order[i])) {
                order.remove(i);
                if let Some(v) = vendor_at.as_mut() {
                    if *v > i {
                        *v -= 1;
                    }
                }
                continue;
            }
            i += 1;
        }
        // Objects open for the previous entry are its parent segments; each entry closes those
        // it does not share and opens its own (paths are sorted, so each object is opened once).
        let mut bytes: Vec<u8> = Vec::with_capacity(order.len() * 16);
        let mut items = Vec::with_capacity(order.len());
        let mut prev: &[u8] = b"";
        // The open objects are the parent segments of the previous path: `ends[k]` is the
        // offset just past the dot closing segment k.
        let mut ends: Vec<usize> = Vec::with_capacity(8);
        let mut first = true;
        bytes.push(b'{');
        // Where the bytes before the next value start: just past the previous value.
        let mut mark = 0u32;
        for &ei in &order {
            let path = path_at(ei);
            let p = path.as_bytes();
            // Segments shared with the previous path stay open (nested: the deepest shared
            // one decides).
            let mut shared = ends.len();
            while let Some(&end) = ends.get(shared.wrapping_sub(1)) {
                if p.len() >= end && p[..end] == prev[..end] {
                    break;
                }
                shared -= 1;
            }
            if shared < ends.len() {
                bytes.extend(std::iter::repeat_n(b'}', ends.len() - shared));
                first = false;
            }
            ends.truncate(shared);
            // Open the remaining parents.
            let mut seg_start = if shared > 0 { ends[shared - 1] } else { 0 };
            while let Some(dot) = find_dot(p, seg_start) {
                if !first {
                    bytes.push(b',');
                }
                write_str(&mut bytes, &path[seg_start..dot]);
                bytes.extend_from_slice(b":{");
                first = true;
                seg_start = dot + 1;
                ends.push(seg_start);
            }
            if !first {
                bytes.push(b',');
            }
            first = false;
            write_str(&mut bytes, &path[seg_start..]);
            bytes.push(b':');
            items.push((ei, mark, bytes.len() as u32));
            mark = bytes.len() as u32;
            prev = p;
        }
        let tail = mark;
        bytes.extend(std::iter::repeat_n(b'}', ends.len() + 1));
        Skeleton {
            vendor_path: vendor_path.map(Into::into),
            extras,
            items,
            bytes,
            tail,
        }
    }
}

/// How a path of a document is recognised in [`OrderCache`]: literal paths by their address
/// (a `'static` text never changes), computed ones by their text.
enum PathId {
    Static(usize, usize),
    Owned(Box<str>),
}

impl PathId {
    fn of(path: &Path) -> Self {
        match path {
            Cow::Borrowed(s) => PathId::Static(s.as_ptr() as usize, s.len()),
            Cow::Owned(s) => PathId::Owned(s.as_str().into()),
        }
    }

    fn is(&self, path: &Path) -> bool {
        match (self, path) {
            (PathId::Static(ptr, len), Cow::Borrowed(s)) => *ptr == s.as_ptr() as usize && *len == s.len(),
            (PathId::Owned(text), Cow::Owned(s)) => **text == **s,
            _ => false,
        }
    }
}

/// The path order ([`path_order`]) of the document shapes seen on this thread. Records of a
/// category mostly write the same paths in the same sequence, so after the first ones the
/// order is a hash of the sequence, a check and a copy instead of a sort. Bounded by count and
/// by bytes (paths can hold record content, e.g. an unknown category): cleared when
/// [`OrderCache::CAPACITY`] shapes or [`OrderCache::MAX_BYTES`] are held, and a shape larger
/// than [`OrderCache::MAX_SHAPE_BYTES`] is not kept at all.
#[derive(Default)]
struct OrderCache {
    shapes: std::collections::HashMap<u64, Shape, foldhash::fast::RandomState>,
    /// Approximate heap bytes held by `shapes`.
    bytes: usize,
}

/// A document shape: its paths, their order, and the skeleton of its JSON once written.
struct Shape {
    ids: Vec<PathId>,
    order: Vec<usize>,
    skeleton: Option<std::rc::Rc<Skeleton>>,
}

impl OrderCache {
    const CAPACITY: usize = 512;
    const MAX_BYTES: usize = 4 << 20;
    const MAX_SHAPE_BYTES: usize = 64 << 10;

    /// The order of `entries`, the key of their shape, and its skeleton if one is kept.
    fn order(&mut self, entries: &[(Path, Val<'_>)]) -> (Vec<usize>, u64, Option<std::rc::Rc<Skeleton>>) {
        use std::hash::{BuildHasher, Hasher};
        let mut h = foldhash::fast::FixedState::default().build_hasher();
        for (p, _) in entries {
            match p {
                Cow::Borrowed(s) => {
                    h.write_usize(s.as_ptr() as usize);
                    h.write_usize(s.len());
                }
                Cow::Owned(s) => {
                    h.write_u8(0xFF);
                    h.write(s.as_bytes());
                }
            }
        }
        let key = h.finish();
        if let Some(shape) = self.shapes.get(&key) {
            if shape.ids.len() == entries.len() && shape.ids.iter().zip(entries).all(|(id, (p, _))| id.is(p)) {
                return (shape.order.clone(), key, shape.skeleton.clone());
            }
        }
        let order = path_order(entries);
        let cost = entries
            .iter()
            .map(|(p, _)| {
                std::mem::size_of::<PathId>()
                    + std::mem::size_of::<usize>()
                    + matches!(p, Cow::Owned(_)) as usize * p.len()
            })
            .sum::<usize>();
        if cost > Self::MAX_SHAPE_BYTES {
            return (order, key, None);
        }
        if self.shapes.len() >= Self::CAPACITY || self.bytes + cost > Self::MAX_BYTES {
            self.shapes.clear();
            self.bytes = 0;
        }
        self.bytes += cost;
        let shape = Shape {
            ids: entries.iter().map(|(p, _)| PathId::of(p)).collect(),
            order: order.clone(),
            skeleton: None,
        };
        self.shapes.insert(key, shape);
        (order, key, None)
    }

    /// Keep the skeleton of the shape with this key (the one [`OrderCache::order`] just gave).
    fn keep_skeleton(&mut self, key: u64, skeleton: std::rc::Rc<Skeleton>) {
        let cost = skeleton.bytes.len()
            + skeleton.items.len() * std::mem::size_of::<(usize, u32, u32)>()
            + skeleton.extras.iter().map(|(_, k)| k.len() + 24).sum::<usize>();
        if cost > Self::MAX_SHAPE_BYTES || self.bytes + cost > Self::MAX_BYTES {
            return;
        }
        if let Some(shape) = self.shapes.get_mut(&key) {
            if shape.skeleton.is_none() {
                self.bytes += cost;
            }
            shape.skeleton = Some(skeleton);
        }
    }
}

thread_local! {
    static ORDER_CACHE: std::cell::RefCell<OrderCache> = std::cell::RefCell::new(OrderCache::default());
}

/// Merge `incoming` at a dotted path of a built document; entries already there win (the
/// same result as [`Doc::merge`] before [`Doc::finish`]).
pub fn merge_into(doc: &mut Value, path: &str, incoming: Value) {
    let (parents, last) = match path.rsplit_once('.') {
        Some((p, l)) => (Some(p), l),
        None => (None, path),
    };
    let mut map = match doc {
        Value::Object(m) => m,
        _ => return,
    };
    for part in parents.into_iter().flat_map(|p| p.split('.')) {
        if !map.get(part).is_some_and(Value::is_object) {
            map.insert(part.to_string(), Value::Object(Map::new()));
        }
        map = match map.get_mut(part) {
            Some(Value::Object(m)) => m,
            _ => return,
        };
    }
    match (map.get_mut(last), incoming) {
        (None, v) => {
            map.insert(last.to_string(), v);
        }
        (Some(Value::Object(existing)), Value::Object(new)) => {
            for (k, v) in new {
                existing.entry(k).or_insert(v);
            }
        }
        // An explicit write at the path wins over the copy.
        (Some(_), _) => {}
    }
}

/// An object key as a vendor copy writes it: its JSON text with the colon (escaped once), its
/// text, and its first 16 bytes as a number that orders like the text (zero padded).
struct KeyForm {
    json: Box<[u8]>,
    text: Box<str>,
    prefix: u128,
}

impl KeyForm {
    fn new(text: &str) -> Self {
        let mut json = Vec::with_capacity(text.len() + 3);
        write_str(&mut json, text);
        json.push(b':');
        let mut bytes = [0u8; 16];
        let n = text.len().min(16);
        bytes[..n].copy_from_slice(&text.as_bytes()[..n]);
        KeyForm {
            json: json.into_boxed_slice(),
            text: text.into(),
            prefix: u128::from_be_bytes(bytes),
        }
    }
}

/// The key forms of keys already seen on this thread, snake_cased (`snake`) or as they are
/// (`raw`). Microsoft records repeat a small set of field names, so after the first records a
/// key costs a hash lookup. Bounded: at most [`SnakeCache::CAPACITY`] keys of at most
/// [`SnakeCache::MAX_KEY_BYTES`] each are kept (a few MiB); other forms are made for one
/// document at a time ([`SnakeCache::end_document`] drops them).
#[derive(Default)]
struct SnakeCache {
    snake: std::collections::HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    raw: std::collections::HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    forms: Vec<KeyForm>,
    /// `forms[..kept]` are in the maps; the rest belong to the current document.
    kept: usize,
}

impl SnakeCache {
    const CAPACITY: usize = 4096;
    const MAX_KEY_BYTES: usize = 256;

    /// Drop the forms made for the document just written.
    fn end_document(&mut self) {
        self.forms.truncate(self.kept);
    }

    /// The index in `forms` of the form of `key`, snake_cased or not.
    fn form(&mut self, key: &str, convert: bool) -> u32 {
        let map = if convert { &self.snake } else { &self.raw };
        if let Some(&i) = map.get(key) {
            return i;
        }
        let form = if convert {
            KeyForm::new(&snake(key))
        } else {
            KeyForm::new(key)
        };
        let i = self.forms.len() as u32;
        self.forms.push(form);
        // Kept forms stay a prefix of `forms`, so `end_document` can cut the others off.
        if self.kept == i as usize && self.kept < Self::CAPACITY && key.len() <= Self::MAX_KEY_BYTES {
            let map = if convert { &mut self.snake } else { &mut self.raw };
            map.insert(key.into(), i);
            self.kept += 1;
        }
        i
    }

    /// Whether form `a` sorts before form `b` (`Equal`: same text).
    fn cmp(&self, a: (u128, u32), b: (u128, u32)) -> std::cmp::Ordering {
        a.0.cmp(&b.0)
            .then_with(|| self.forms[a.1 as usize].text.cmp(&self.forms[b.1 as usize].text))
    }
}

thread_local! {
    static SNAKE_CACHE: std::cell::RefCell<SnakeCache> = std::cell::RefCell::new(SnakeCache::default());
}

/// How `serde_json` escapes each byte in a string: 0 not at all, `u` as `\u00XX`, else `\` and
/// that byte.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0A] = b'n';
    t[0x0C] = b'f';
    t[0x0D] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Write a JSON string: the bytes `serde_json` writes for it, without going through a
/// serializer. Most strings need no escape: they are checked eight bytes at a time and copied
/// at once.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if any_escape(bytes) {
        write_escaped(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

/// The eight bytes at `i` as a little-endian word (`i + 8 <= b.len()`).
#[inline(always)]
fn word_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// The offset of the first `.` in `b` at or after `from` (eight bytes at a time).
fn find_dot(b: &[u8], from: usize) -> Option<usize> {
    const L: u64 = 0x0101_0101_0101_0101;
    const H: u64 = 0x8080_8080_8080_8080;
    // High bit of each byte of `w` that is a dot (exact per byte: no carry crosses bytes).
    let dots = |w: u64| {
        let x = w ^ (L * u64::from(b'.'));
        !((((x & !H) + !H) | x) & H) & H
    };
    let mut i = from;
    while i + 8 <= b.len() {
        let d = dots(word_at(b, i));
        if d != 0 {
            return Some(i + (d.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    if i >= b.len() {
        return None;
    }
    if b.len() >= 8 {
        // The last eight bytes, without those before `i`.
        let start = b.len() - 8;
        let d = dots(word_at(b, start)) & (!0u64 << (8 * (i - start)));
        return (d != 0).then(|| start + (d.trailing_zeros() / 8) as usize);
    }
    b[i..].iter().position(|&c| c == b'.').map(|k| i + k)
}

/// Whether any byte of `b` needs escaping in a JSON string.
#[inline(always)]
fn any_escape(b: &[u8]) -> bool {
    let n = b.len();
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            if needs_escape(word_at(b, i)) {
                return true;
            }
            i += 8;
        }
        // The tail as the last eight bytes (overlapping bytes already found clean).
        i < n && needs_escape(word_at(b, n - 8))
    } else if n >= 4 {
        // Two overlapping four-byte halves.
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let hi = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]);
        needs_escape(u64::from(lo) | (u64::from(hi) << 32))
    } else {
        b.iter().any(|&c| ESCAPE[c as usize] != 0)
    }
}

/// Write the content of a JSON string that has bytes to escape (serde_json's escapes): runs
/// between escaped bytes are found eight bytes at a time and copied at once.
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if i + 8 <= bytes.len() {
            let mask = escape_mask(word_at(bytes, i));
            if mask == 0 {
                i += 8;
                continue;
            }
            i += (mask.trailing_zeros() / 8) as usize;
        } else if ESCAPE[bytes[i] as usize] == 0 {
            i += 1;
            continue;
        }
        let b = bytes[i];
        out.extend_from_slice(&bytes[start..i]);
        let esc = ESCAPE[b as usize];
        if esc == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xF) as usize]]);
        } else {
            out.extend_from_slice(&[b'\\', esc]);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// The high bit of each of eight bytes that needs escaping: a control character, `"` or `\`
/// (exact per byte: no carry or borrow crosses bytes, so the lowest set bit is the first).
fn escape_mask(w: u64) -> u64 {
    const L: u64 = 0x0101_0101_0101_0101;
    const H: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| !((((x & !H) + !H) | x) & H) & H;
    let at_least_space = (((w | H) - L * 0x20) | w) & H;
    (!at_least_space & H) | zero(w ^ (L * u64::from(b'"'))) | zero(w ^ (L * u64::from(b'\\')))
}

/// Write a JSON array of strings.
fn write_strs<'s>(out: &mut Vec<u8>, items: impl Iterator<Item = &'s str>) {
    out.push(b'[');
    for (i, s) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, s);
    }
    out.push(b']');
}

/// Whether any of eight bytes is a control character, `"` or `\` (bit tricks: a byte below
/// a bound, a byte equal to a value).
fn needs_escape(w: u64) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let control = w.wrapping_sub(LO * 0x20) & !w & HI;
    let q = w ^ (LO * u64::from(b'"'));
    let quote = q.wrapping_sub(LO) & !q & HI;
    let b = w ^ (LO * u64::from(b'\\'));
    let backslash = b.wrapping_sub(LO) & !b & HI;
    (control | quote | backslash) != 0
}

/// Write a value as compact JSON: the bytes `serde_json::to_writer` gives.
pub(crate) fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, x);
            }
            out.push(b']');
        }
        Value::Object(m) => {
            out.push(b'{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, x);
            }
            out.push(b'}');
        }
    }
}

/// Write `v` as JSON with object keys snake_cased `depth` levels deep, in the order a
/// `serde_json::Map` of the converted keys would have (later duplicates win), `extras`
/// merged into the top-level object (they win). `keys` is scratch shared by every level
/// (each works on its own tail): sort prefix, form index, value.
fn write_snake<'v>(
    out: &mut Vec<u8>,
    v: &'v Value,
    depth: usize,
    extras: &[(&'v str, &'v Value)],
    keys: &mut Vec<(u128, u32, &'v Value)>,
    cache: &mut SnakeCache,
) {
    if depth == 0 && extras.is_empty() {
        write_value(out, v);
        return;
    }
    match v {
        Value::Object(m) => {
            let base = keys.len();
            for (k, x) in m {
                let i = cache.form(k, depth > 0);
                keys.push((cache.forms[i as usize].prefix, i, x));
            }
            for (k, x) in extras {
                let i = cache.form(k, false);
                keys.push((cache.forms[i as usize].prefix, i, *x));
            }
            // Converted keys mostly keep the order of the originals (and stay distinct): sort
            // and look for duplicates only when not.
            let ordered = keys[base..]
                .windows(2)
                .all(|w| cache.cmp((w[0].0, w[0].1), (w[1].0, w[1].1)).is_lt());
            if !ordered {
                // Stable: of equal keys the later stays last, and wins below.
                let forms = &cache.forms;
                keys[base..].sort_by(|a, b| {
                    a.0.cmp(&b.0)
                        .then_with(|| forms[a.1 as usize].text.cmp(&forms[b.1 as usize].text))
                });
            }
            let end = keys.len();
            out.push(b'{');
            let mut first = true;
            for i in base..end {
                let (prefix, form, x) = keys[i];
                if !ordered && i + 1 < end && cache.cmp((prefix, form), (keys[i + 1].0, keys[i + 1].1)).is_eq() {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(&cache.forms[form as usize].json);
                write_snake(out, x, depth.saturating_sub(1), &[], keys, cache);
            }
            out.push(b'}');
            keys.truncate(base);
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_snake(out, x, depth, &[], keys, cache);
            }
            out.push(b']');
        }
        other => write_value(out, other),
    }
}

/// `path` is the dotted join of `parts` or lies below it.
fn under_parts(path: &str, parts: &[&str]) -> bool {
    // Most paths differ at the first byte.
    if let Some(first) = parts.first() {
        if !first.is_empty() && path.as_bytes().first() != first.as_bytes().first() {
            return false;
        }
    }
    let mut rest = path;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            let Some(r) = rest.strip_prefix('.') else {
                return false;
            };
            rest = r;
        }
        let Some(r) = rest.strip_prefix(part) else {
            return false;
        };
        rest = r;
    }
    rest.is_empty() || rest.starts_with('.')
}

/// `path` is `key` or lies below it.
fn under(path: &str, key: &str) -> bool {
    let (p, k) = (path.as_bytes(), key.as_bytes());
    p.len() >= k.len() && p.first() == k.first() && p[..k.len()] == *k && (p.len() == k.len() || p[k.len()] == b'.')
}

/// Path order in which `.` sorts before every other byte, so that all paths below a prefix
/// are contiguous (`a.b`, `a.b.c`, `a.b-c`).
fn cmp_path(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => path_byte(a[i]).cmp(&path_byte(b[i])),
        None => a.len().cmp(&b.len()),
    }
}

/// A path byte as it sorts: `.` first, then every other byte in its order (one to one).
fn path_byte(b: u8) -> u8 {
    // Branch-free: bytes below `.` move up by one, `.` becomes 0.
    (b + u8::from(b < b'.')) * u8::from(b != b'.')
}

/// The first 14 bytes of a path as a number ordered like [`cmp_path`] (zero padded, the low 16
/// bits zero): a smaller key means a smaller path; equal keys need [`cmp_path`]. Every byte is
/// mapped with [`path_byte`] at once (bit tricks on the 16 bytes as one number).
fn path_key(path: &str) -> u128 {
    const L: u128 = u128::from_be_bytes([1; 16]);
    const H: u128 = L * 0x80;
    let b = path.as_bytes();
    let n = b.len();
    let x = if n >= 16 {
        let mut w = [0u8; 16];
        w.copy_from_slice(&b[..16]);
        u128::from_be_bytes(w)
    } else if n >= 8 {
        // The first and the last eight bytes, overlapping.
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[..8]);
        let head = u128::from(u64::from_be_bytes(w)) << 64;
        w.copy_from_slice(&b[n - 8..]);
        head | (u128::from(u64::from_be_bytes(w)) << (8 * (16 - n)))
    } else if n >= 4 {
        let head = u128::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])) << 96;
        let tail = u128::from(u32::from_be_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]));
        head | (tail << (8 * (16 - n)))
    } else {
        b.iter()
            .enumerate()
            .fold(0u128, |acc, (i, &c)| acc | (u128::from(c) << (8 * (15 - i))))
    };
    // The bytes that count: the first 14 of the path.
    let kept = n.min(14);
    let mask = if kept == 0 { 0 } else { !0u128 << (8 * (16 - kept)) };
    let x = x & mask;
    // High bit of each byte: byte >= '.' (exact per byte: no borrow crosses bytes).
    let ge = (((x | H) - L * u128::from(b'.')) | x) & H;
    let below = !ge & H & mask;
    // High bit of each byte: byte == '.'.
    let y = x ^ (L * u128::from(b'.'));
    let dot = !((((y & !H) + !H) | y) & H) & H & mask;
    (x + (below >> 7)) & !((dot >> 7) * 0xFF)
}

/// Build nested objects from writes sorted with [`cmp_path`]; `start` is the byte offset of
/// the current level's key in every path.
fn build(map: &mut Map<String, Value>, entries: Vec<(Path, Value)>, start: usize) {
    let mut iter = entries.into_iter().peekable();
    while let Some((path, value)) = iter.next() {
        let rest = path.get(start..).unwrap_or("");
        let key_len = rest.find('.').unwrap_or(rest.len());
        let key = rest[..key_len].to_string();
        let is_leaf = rest.len() == key_len;
        let mut leaf: Option<Value> = None;
        let mut children: Vec<(Path, Value)> = Vec::new();
        let same = |p: &str| {
            let r = p.get(start..).unwrap_or("");
            r.len() >= key_len
                && r.as_bytes()[..key_len] == *key.as_bytes()
                && (r.len() == key_len || r.as_bytes()[key_len] == b'.')
        };
        if is_leaf {
            leaf = Some(value);
        } else {
            children.push((path, value));
        }
        while let Some((next, _)) = iter.peek() {
            if !same(next) {
                break;
            }
            if let Some((p, v)) = iter.next() {
                if p.len() == start + key_len {
                    leaf = Some(v);
                } else {
                    children.push((p, v));
                }
            }
        }
        let value = if children.is_empty() {
            leaf.unwrap_or(Value::Null)
        } else {
            let mut inner = match leaf {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            build(&mut inner, children, start + key_len + 1);
            Value::Object(inner)
        };
        map.insert(key, value);
    }
}

impl Default for Doc<'_> {
    fn default() -> Self {
        Self::new()
    }
}

fn push_unique<'a>(list: &mut Vec<Cow<'a, str>>, value: Option<Cow<'a, str>>) {
    if let Some(v) = value {
        if !v.is_empty() && !list.contains(&v) {
            list.push(v);
        }
    }
}

/// A non-empty string field.
pub fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|x| !x.is_empty())
}

/// A non-empty string at a path of object keys.
pub fn sp<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str).filter(|x| !x.is_empty())
}

/// The value at a path of object keys.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    Some(cur)
}

/// The first present non-empty string among several keys.
pub fn s_any<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| s(v, k))
}

/// An integer given as a JSON number or a numeric string.
pub fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(t) => {
            let t = t.trim();
            t.parse::<i64>()
                .ok()
                .or_else(|| t.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| f as i64))
        }
        _ => None,
    }
}

/// A float given as a JSON number or a numeric string.
pub fn float(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(t) => t.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// A boolean given as a JSON bool or `"true"`/`"false"`.
pub fn boolean(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(t) if t.eq_ignore_ascii_case("true") => Some(true),
        Value::String(t) if t.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A string rendering of a scalar id (Defender `ReportId` is a number).
pub fn id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(t) if !t.is_empty() => Some(t.clone()),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Some((f as i64).to_string()),
            _ => Some(n.to_string()),
        },
        _ => None,
    }
}

/// The MITRE ATT&CK tactic name of a Microsoft alert category (`DefenseEvasion` ->
/// `Defense Evasion`); `None` for categories that are not tactics (`Malware`, `Ransomware`...).
pub fn mitre_tactic(category: &str) -> Option<&'static str> {
    const TACTICS: [(&str, &str); 14] = [
        ("reconnaissance", "Reconnaissance"),
        ("resourcedevelopment", "Resource Development"),
        ("initialaccess", "Initial Access"),
        ("execution", "Execution"),
        ("persistence", "Persistence"),
        ("privilegeescalation", "Privilege Escalation"),
        ("defenseevasion", "Defense Evasion"),
        ("credentialaccess", "Credential Access"),
        ("discovery", "Discovery"),
        ("lateralmovement", "Lateral Movement"),
        ("collection", "Collection"),
        ("commandandcontrol", "Command and Control"),
        ("exfiltration", "Exfiltration"),
        ("impact", "Impact"),
    ];
    let key: String = category
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    TACTICS.iter().find(|(k, _)| *k == key).map(|(_, name)| *name)
}

/// Normalise a Microsoft timestamp to RFC 3339 UTC. Zone-less values (O365 `CreationTime`,
/// Intune dates) are UTC by contract.
pub fn timestamp(v: Option<&Value>) -> Option<String> {
    let text = v?.as_str()?.trim();
    if text.is_empty() {
        return None;
    }
    fast_timestamp(text).or_else(|| chrono_timestamp(text))
}

/// The common shapes (`2025-01-01T10:03:19`, with up to nine fraction digits, zone-less, `Z`
/// or `+00:00`) without chrono: the same text [`chrono_timestamp`] gives, or `None` to let
/// chrono decide (other offsets, leap seconds, out-of-range fields, other layouts).
fn fast_timestamp(text: &str) -> Option<String> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix(b".") {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        for (i, &c) in frac[..digits].iter().enumerate() {
            nanos += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
        }
        rest = &frac[digits..];
    }
    if !matches!(rest, b"" | b"Z" | b"+00:00") {
        return None;
    }
    let mut out = String::with_capacity(30);
    out.push_str(&text[..19]);
    let (width, value) = if nanos == 0 {
        (0, 0)
    } else if nanos.is_multiple_of(1_000_000) {
        (3, nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        (6, nanos / 1_000)
    } else {
        (9, nanos)
    };
    if width > 0 {
        out.push('.');
        for i in (0..width).rev() {
            out.push(char::from(b'0' + (value / 10u32.pow(i) % 10) as u8));
        }
    }
    out.push('Z');
    Some(out)
}

/// Every layout Microsoft uses, through chrono.
fn chrono_timestamp(text: &str) -> Option<String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::AutoSi, true));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%m/%d/%Y %H:%M:%S",
        "%m/%d/%Y %I:%M:%S %p",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, fmt) {
            return Some(t.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true));
        }
    }
    None
}

/// An IP in its normal text form (borrowed when the input already is: a plain IPv4 address,
/// which Rust parses only in its one canonical spelling) and the port the input carried.
pub fn canonical_ip(text: &str) -> Option<(Cow<'_, str>, Option<u16>)> {
    let trimmed = text.trim();
    if trimmed.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some((Cow::Borrowed(trimmed), None));
    }
    parse_ip(trimmed).map(|(ip, port)| (Cow::Owned(ip.to_string()), port))
}

/// Parse an IP that may carry a port (`203.0.113.1:443`, `[2001:db8::1]:443`).
pub fn parse_ip(text: &str) -> Option<(IpAddr, Option<u16>)> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some((ip, None));
    }
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some((sa.ip(), Some(sa.port())));
    }
    // `[v6]` without a port.
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse::<IpAddr>().ok())
        .map(|ip| (ip, None))
}

/// Milliseconds (number or numeric string) to ECS nanoseconds.
pub fn duration_ns(v: Option<&Value>) -> Option<i64> {
    float(v)
        .filter(|ms| *ms >= 0.0 && *ms < 9.0e12)
        .map(|ms| (ms * 1_000_000.0).round() as i64)
}

/// Microsoft severity words to (ECS `event.severity` on a 0-10 scale, `event.risk_score` 0-100).
/// Low 3/21, Medium 5/47, High 8/73, Critical 10/99, Informational 1/0, hidden/none: nothing.
pub fn severity(word: Option<&str>) -> Option<(i64, f64)> {
    let w = word?;
    let pick = |x: &str| w.eq_ignore_ascii_case(x);
    if pick("informational") || pick("info") {
        Some((1, 0.0))
    } else if pick("low") {
        Some((3, 21.0))
    } else if pick("medium") || pick("moderate") {
        Some((5, 47.0))
    } else if pick("high") {
        Some((8, 73.0))
    } else if pick("critical") || pick("veryhigh") {
        Some((10, 99.0))
    } else {
        None
    }
}

/// Write `event.severity` and `event.risk_score` from a severity word.
pub fn put_severity<'a>(doc: &mut Doc<'a>, word: Option<&'a str>) {
    if let Some((sev, score)) = severity(word) {
        doc.put_i64("event.severity", Some(sev));
        doc.put("event.risk_score", Value::from(score));
    }
}

/// Convert a camelCase / PascalCase key to snake_case, with the few spellings Elastic's
/// integrations use that a mechanical conversion would not produce.
pub fn snake(key: &str) -> Cow<'_, str> {
    let mut out = String::new();
    match snake_into(key, &mut out) {
        Some(fixed) => Cow::Borrowed(fixed),
        None if out.is_empty() => Cow::Borrowed(key),
        None => Cow::Owned(out),
    }
}

/// Append the snake_case form of `key` to `out`, unless it needs no change (`None` and
/// nothing appended when `key` is already snake_case) or has a fixed spelling (`Some`).
fn snake_into(key: &str, out: &mut String) -> Option<&'static str> {
    match key {
        "riskLevelDuringSignIn" => return Some("risk_level_during_signin"),
        "@odata.type" => return Some("odata_type"),
        _ => {}
    }
    if key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    out.reserve(key.len() + 4);
    if key.is_ascii() {
        let b = key.as_bytes();
        for (i, &c) in b.iter().enumerate() {
            if c.is_ascii_uppercase() {
                let boundary = i > 0 && {
                    let p = b[i - 1];
                    p.is_ascii_lowercase()
                        || p.is_ascii_digit()
                        || (p.is_ascii_uppercase() && b.get(i + 1).is_some_and(u8::is_ascii_lowercase))
                };
                if boundary {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase() as char);
            } else if c == b'.' || c == b' ' || c == b'-' {
                out.push('_');
            } else {
                out.push(c as char);
            }
        }
        return None;
    }
    let chars: Vec<char> = key.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = if i > 0 { Some(chars[i - 1]) } else { None };
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                None => false,
                Some('_') => false,
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_uppercase() => next.is_some_and(|n| n.is_lowercase()),
                _ => false,
            };
            if boundary {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else if c == '.' || c == ' ' || c == '-' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    None
}

/// Copy an object with snake_case keys, `depth` levels deep (1 = top-level keys only).
/// Values below that depth are copied untouched.
pub fn snake_keys(v: &Value, depth: usize) -> Value {
    if depth == 0 {
        return v.clone();
    }
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                out.insert(snake(k).into_owned(), snake_keys(x, depth - 1));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| snake_keys(x, depth)).collect()),
        other => other.clone(),
    }
}

/// Like [`snake_keys`] but moving the value: unchanged keys and all values are reused.
pub fn snake_keys_owned(v: Value, depth: usize) -> Value {
    if depth == 0 {
        return v;
    }
    match v {
        Value::Object(mut m) => {
            if m.keys()
                .all(|k| matches!(snake(k), Cow::Borrowed(b) if b.len() == k.len()))
            {
                // Keys already snake_case: keep the map, convert below in place.
                for x in m.values_mut() {
                    if x.is_object() || x.is_array() {
                        *x = snake_keys_owned(std::mem::take(x), depth - 1);
                    }
                }
                return Value::Object(m);
            }
            let mut out = Map::new();
            for (k, x) in m {
                let key = match snake(&k) {
                    Cow::Borrowed(b) if b.len() == k.len() => k,
                    other => other.into_owned(),
                };
                out.insert(key, snake_keys_owned(x, depth - 1));
            }
            Value::Object(out)
        }
        Value::Array(mut a) => {
            for x in a.iter_mut() {
                if x.is_object() || x.is_array() {
                    *x = snake_keys_owned(std::mem::take(x), depth);
                }
            }
            Value::Array(a)
        }
        other => other,
    }
}

/// `prefix.key`: a dotted path under a prefix chosen at run time (no formatting machinery).
pub fn join(prefix: &str, key: &str) -> String {
    let mut path = String::with_capacity(prefix.len() + 1 + key.len());
    path.push_str(prefix);
    path.push('.');
    path.push_str(key);
    path
}

/// The part after `@` of a UPN or e-mail address.
pub fn domain_of(upn: &str) -> Option<&str> {
    upn.rsplit_once('@').map(|(_, d)| d).filter(|d| !d.is_empty())
}

/// Write `user.*` (or `user.target.*` with `prefix`) from a principal name that may be a UPN.
pub fn put_user<'a>(
    doc: &mut Doc<'a>,
    prefix: &'a str,
    name: Option<&'a str>,
    id: Option<&'a str>,
    full_name: Option<&'a str>,
) {
    // Literal paths for the two prefixes in use: no allocation per write.
    let [p_name, p_email, p_domain, p_id, p_full] = match prefix {
        "user.target" => [
            "user.target.name",
            "user.target.email",
            "user.target.domain",
            "user.target.id",
            "user.target.full_name",
        ],
        _ => ["user.name", "user.email", "user.domain", "user.id", "user.full_name"],
    };
    if let Some(n) = name {
        doc.put_str(p_name, Some(n));
        if n.contains('@') {
            doc.put_str(p_email, Some(n));
            doc.put_str(p_domain, domain_of(n));
        }
    }
    doc.put_str(p_id, id);
    doc.put_str(p_full, full_name);
    doc.relate_user(name);
}

/// Write `source.geo.*` from an Entra `location` object.
pub fn put_entra_geo<'a>(doc: &mut Doc<'a>, loc: Option<&'a Value>) {
    let Some(loc) = loc.filter(|l| l.is_object()) else {
        return;
    };
    doc.put_str("source.geo.city_name", s(loc, "city"));
    doc.put_str("source.geo.region_name", s(loc, "state"));
    doc.put_str("source.geo.country_iso_code", s(loc, "countryOrRegion"));
    if let Some(geo) = loc.get("geoCoordinates") {
        let lat = float(geo.get("latitude")).filter(|v| (-90.0..=90.0).contains(v));
        let lon = float(geo.get("longitude")).filter(|v| (-180.0..=180.0).contains(v));
        if let (Some(lat), Some(lon)) = (lat, lon) {
            let mut m = Map::new();
            m.insert("lat".into(), Value::from(lat));
            m.insert("lon".into(), Value::from(lon));
            doc.put("source.geo.location", Value::Object(m));
        }
    }
}

/// Write `url.*` from a URL string without a URL parser: original, scheme, domain, port,
/// path, query.
pub fn put_url<'a>(doc: &mut Doc<'a>, text: Option<&'a str>) {
    let Some(text) = text else { return };
    doc.put_str("url.original", Some(text));
    let Some((scheme, rest)) = text.split_once("://") else {
        return;
    };
    doc.put_string("url.scheme", Some(scheme.to_ascii_lowercase()));
    let (authority, path_query) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => match rest.find('?') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        },
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
            Ok(p) if !h.contains(':') || h.starts_with('[') => (h, Some(p)),
            _ => (host_port, None),
        },
        _ => (host_port, None),
    };
    doc.put_str("url.domain", Some(host.trim_start_matches('[').trim_end_matches(']')));
    doc.put_i64("url.port", port.map(i64::from));
    let (path, query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_query, None),
    };
    let path = path.split('#').next().unwrap_or(path);
    doc.put_str("url.path", Some(path));
    doc.put_str("url.query", query.map(|q| q.split('#').next().unwrap_or(q)));
}

/// Event types for a verb such as `Add`, `Delete ManagedDevice`, `FileDeleted`.
pub fn change_type(verb: &str) -> &'static str {
    let v = verb.trim().to_ascii_lowercase();
    let starts = |p: &str| v.starts_with(p);
    if starts("add")
        || starts("create")
        || starts("new")
        || starts("register")
        || v.ends_with("created")
        || v.ends_with("added")
        || v.ends_with("uploaded")
    {
        "creation"
    } else if starts("delete")
        || starts("remove")
        || starts("hard delete")
        || v.ends_with("deleted")
        || v.ends_with("removed")
    {
        "deletion"
    } else if starts("update")
        || starts("set")
        || starts("patch")
        || starts("change")
        || starts("reset")
        || starts("assign")
        || starts("unassign")
        || starts("enable")
        || starts("disable")
        || starts("restore")
        || starts("wipe")
        || starts("retire")
        || v.ends_with("modified")
        || v.ends_with("changed")
        || v.ends_with("renamed")
        || v.ends_with("updated")
    {
        "change"
    } else {
        "info"
    }
}

/// Outcome words used across Microsoft records.
pub fn outcome_word(word: &str) -> Option<&'static str> {
    let w = word.trim();
    let is = |x: &str| w.eq_ignore_ascii_case(x);
    if is("success") || is("succeeded") || is("true") || is("partiallysucceeded") || is("0") {
        Some("success")
    } else if is("failure") || is("failed") || is("fail") || is("false") || is("error") {
        Some("failure")
    } else {
        None
    }
}

/// Any of the usual time fields, for records we cannot otherwise map.
pub fn any_timestamp(record: &Value) -> Option<String> {
    const KEYS: [&str; 8] = [
        "time",
        "TimeGenerated",
        "Timestamp",
        "CreationTime",
        "createdDateTime",
        "activityDateTime",
        "timeGenerated",
        "lastUpdateDateTime",
    ];
    KEYS.iter().find_map(|k| timestamp(record.get(*k))).or_else(|| {
        record
            .get("properties")
            .and_then(|p| KEYS.iter().find_map(|k| timestamp(p.get(*k))))
    })
}

/// Hive abbreviations ECS uses for `registry.hive`.
pub fn registry_hive(key: &str) -> Option<(&'static str, &str)> {
    const HIVES: [(&str, &str); 6] = [
        ("HKEY_LOCAL_MACHINE", "HKLM"),
        ("HKEY_CURRENT_USER", "HKCU"),
        ("HKEY_USERS", "HKU"),
        ("HKEY_CLASSES_ROOT", "HKCR"),
        ("HKEY_CURRENT_CONFIG", "HKCC"),
        ("HKEY_PERFORMANCE_DATA", "HKPD"),
    ];
    for (long, short) in HIVES {
        for prefix in [long, short] {
            if let Some(rest) = strip_prefix_ci(key, prefix) {
                if rest.is_empty() {
                    return Some((short, ""));
                }
                if let Some(rest) = rest.strip_prefix('\\') {
                    return Some((short, rest));
                }
            }
        }
    }
    None
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    if text.len() >= prefix.len()
        && text.is_char_boundary(prefix.len())
        && text[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&text[prefix.len()..])
    } else {
        None
    }
}

/// The last path component of a Windows or POSIX path.
#[allow(dead_code)]
pub fn basename(path: &str) -> &str {
    path.rsplit(['\\', '/']).next().unwrap_or(path)
}

/// Split `Name (T1059.001)` style MITRE technique labels, or bare ids, into ids.
pub fn technique_ids(v: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut scan = |text: &str| {
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'T' && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                if j - i - 1 == 4 {
                    if j + 4 <= b.len() && b[j] == b'.' && b[j + 1..j + 4].iter().all(u8::is_ascii_digit) {
                        j += 4;
                    }
                    if j == b.len() || !b[j].is_ascii_alphanumeric() {
                        let id = &text[i..j];
                        if !out.iter().any(|x| x == id) {
                            out.push(id.to_string());
                        }
                    }
                }
                i = j.max(i + 1);
            } else {
                i += 1;
            }
        }
    };
    match v {
        Some(Value::String(t)) => scan(t),
        Some(Value::Array(a)) => {
            for x in a {
                if let Some(t) = x.as_str() {
                    scan(t);
                }
            }
        }
        _ => {}
    }
    out
}

/// Write `threat.*` from MITRE technique ids.
pub fn put_techniques<'a>(doc: &mut Doc<'a>, ids: Vec<String>) {
    if ids.is_empty() {
        return;
    }
    doc.put_str("threat.framework", Some("MITRE ATT&CK"));
    let (subs, mains): (Vec<String>, Vec<String>) = ids.into_iter().partition(|i| i.contains('.'));
    let mut all_main = mains.clone();
    for sub in &subs {
        if let Some((m, _)) = sub.split_once('.') {
            if !all_main.iter().any(|x| x == m) {
                all_main.push(m.to_string());
            }
        }
    }
    doc.put(
        "threat.technique.id",
        Value::Array(all_main.into_iter().map(Value::String).collect()),
    );
    if !subs.is_empty() {
        doc.put(
            "threat.technique.subtechnique.id",
            Value::Array(subs.into_iter().map(Value::String).collect()),
        );
    }
}

/// A list of strings from a JSON array, or a JSON array encoded in a string, or a single string.
pub fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        Some(Value::String(t)) if t.trim_start().starts_with('[') => match serde_json::from_str::<Value>(t) {
            Ok(inner @ Value::Array(_)) => string_list(Some(&inner)),
            _ => vec![t.clone()],
        },
        Some(Value::String(t)) if !t.is_empty() => vec![t.clone()],
        _ => Vec::new(),
    }
}

/// Write the tenant as `cloud.account.id` and `organization.id`.
pub fn put_tenant<'a>(doc: &mut Doc<'a>, tenant: Option<&'a str>) {
    doc.put_str("cloud.account.id", tenant);
    doc.put_str("organization.id", tenant);
}

/// ECS `os.type` from a Microsoft platform name.
pub fn os_type(platform: &str) -> Option<&'static str> {
    let p = platform.to_ascii_lowercase();
    if p.starts_with("windows") || p.starts_with("win") {
        Some("windows")
    } else if p.starts_with("ios") || p.starts_with("ipados") {
        Some("ios")
    } else if p.starts_with("android") {
        Some("android")
    } else if p.starts_with("mac") || p.starts_with("osx") {
        Some("macos")
    } else if p.starts_with("linux")
        || p.starts_with("ubuntu")
        || p.starts_with("rhel")
        || p.starts_with("centos")
        || p.starts_with("debian")
    {
        Some("linux")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snake_case_matches_elastic_spellings() {
        assert_eq!(snake("userPrincipalName"), "user_principal_name");
        assert_eq!(snake("IPAddress"), "ip_address");
        assert_eq!(snake("InitiatingProcessSHA256"), "initiating_process_sha256");
        assert_eq!(snake("riskLevelDuringSignIn"), "risk_level_during_signin");
        assert_eq!(snake("already_snake"), "already_snake");
        assert_eq!(snake("ÉtéValue"), "été_value");
    }

    #[test]
    fn ips_lose_their_ports() {
        assert_eq!(
            parse_ip("203.0.113.10:443"),
            Some(("203.0.113.10".parse().expect("ip"), Some(443)))
        );
        assert_eq!(
            parse_ip("[2001:db8::1]:8443"),
            Some(("2001:db8::1".parse().expect("ip"), Some(8443)))
        );
        assert_eq!(
            parse_ip("[2001:db8::1]"),
            Some(("2001:db8::1".parse().expect("ip"), None))
        );
        assert_eq!(
            parse_ip("2001:db8::1"),
            Some(("2001:db8::1".parse().expect("ip"), None))
        );
        assert_eq!(parse_ip("not-an-ip"), None);
    }

    #[test]
    fn canonical_ips_are_the_parsed_text() {
        for text in [
            "203.0.113.10",
            " 203.0.113.10 ",
            "203.0.113.010",
            "203.0.113.10:443",
            "2001:DB8::1",
            "[2001:db8::1]:8443",
            "::ffff:192.0.2.1",
            "0.0.0.0",
            "x",
        ] {
            let expected = parse_ip(text).map(|(ip, port)| (ip.to_string(), port));
            let got = canonical_ip(text).map(|(t, port)| (t.into_owned(), port));
            assert_eq!(got, expected, "{text}");
        }
    }

    #[test]
    fn timestamps_become_rfc3339_utc() {
        assert_eq!(
            timestamp(Some(&json!("2025-01-01T10:03:19"))).as_deref(),
            Some("2025-01-01T10:03:19Z")
        );
        assert_eq!(
            timestamp(Some(&json!("2025-01-01T12:03:19.5+02:00"))).as_deref(),
            Some("2025-01-01T10:03:19.500Z")
        );
        assert_eq!(
            timestamp(Some(&json!("1/2/2025 9:00:00 AM"))).as_deref(),
            Some("2025-01-02T09:00:00Z")
        );
        assert_eq!(timestamp(Some(&json!(17))), None);
        assert_eq!(timestamp(Some(&json!("yesterday"))), None);
    }

    #[test]
    fn fast_timestamps_match_chrono() {
        let mut cases: Vec<String> = Vec::new();
        for date in [
            "2025-01-01",
            "2024-02-29",
            "2025-02-29",
            "2100-02-29",
            "2000-02-29",
            "2025-04-31",
            "2025-13-01",
            "2025-00-10",
            "2025-12-00",
            "0000-01-01",
            "9999-12-31",
            "2025-1-01",
            "2025/01/01",
            "2025-01-0x",
        ] {
            for time in [
                "10:03:19", "23:59:59", "24:00:00", "10:60:00", "10:00:60", "1:00:00", "10:0a:00",
            ] {
                for frac in [
                    "",
                    ".",
                    ".5",
                    ".123",
                    ".1234567",
                    ".120000",
                    ".000001",
                    ".000000000",
                    ".123456789",
                    ".1234567891",
                    ".0001000",
                    ".x",
                ] {
                    for zone in [
                        "",
                        "Z",
                        "z",
                        "+00:00",
                        "-00:00",
                        "+02:00",
                        "+0000",
                        " ",
                        "Zx",
                        "+00:00:00",
                    ] {
                        cases.push(format!("{date}T{time}{frac}{zone}"));
                    }
                }
            }
        }
        cases.push("2025-01-01 10:03:19".into());
        cases.push("2025-01-01t10:03:19Z".into());
        for text in &cases {
            if let Some(fast) = fast_timestamp(text) {
                assert_eq!(Some(fast), chrono_timestamp(text), "{text}");
            }
        }
        assert!(fast_timestamp("2025-01-01T10:03:19.1234567Z").is_some());
        assert!(fast_timestamp("2025-01-01T10:03:19").is_some());
        assert!(fast_timestamp("2025-01-01T10:03:19+00:00").is_some());
    }

    #[test]
    fn durations_are_nanoseconds_from_numbers_or_strings() {
        assert_eq!(duration_ns(Some(&json!(16))), Some(16_000_000));
        assert_eq!(duration_ns(Some(&json!("16"))), Some(16_000_000));
        assert_eq!(duration_ns(Some(&json!(-1))), None);
        assert_eq!(duration_ns(Some(&json!("x"))), None);
    }

    #[test]
    fn mitre_ids_are_extracted() {
        let ids = technique_ids(Some(&json!(
            "[\"PowerShell (T1059.001)\",\"Ingress Tool Transfer (T1105)\"]"
        )));
        assert_eq!(ids, vec!["T1059.001".to_string(), "T1105".to_string()]);
        assert!(technique_ids(Some(&json!("T12345 and XT1059"))).is_empty());
    }

    #[test]
    fn urls_are_split() {
        let mut doc = Doc::new();
        put_url(
            &mut doc,
            Some("https://user@graph.microsoft.com:8443/v1.0/users?$top=5#x"),
        );
        let v = doc.finish();
        assert_eq!(v["url"]["domain"], "graph.microsoft.com");
        assert_eq!(v["url"]["port"], 8443);
        assert_eq!(v["url"]["path"], "/v1.0/users");
        assert_eq!(v["url"]["query"], "$top=5");
    }

    #[test]
    fn json_writer_matches_serde_json() {
        let mut text: String = (0u8..0x80).map(char::from).collect();
        text.push_str("é\u{2028}😀\\\"");
        text.push_str("0123456789abcdef\"0123456789\\abcdef\u{7f}\u{1f}x");
        let v = json!({
            "s": text, "n": [0, -1, 1.5, 1e300, u64::MAX], "b": [true, false, null],
            "o": {"": {}, "k\u{1}": []}
        });
        for x in [&v, &v["s"], &v["n"], &v["o"]] {
            let mut out = Vec::new();
            write_value(&mut out, x);
            assert_eq!(out, serde_json::to_vec(x).expect("serialize"));
        }
    }

    #[test]
    fn strings_of_every_short_length_escape_like_serde_json() {
        for len in 0..24 {
            for pos in 0..len {
                for special in ['"', '\\', '\n', '\u{1}', '\u{1f}', 'é', 'a'] {
                    let mut text: String = "abcdefghijklmnopqrstuvwxyz".chars().take(len).collect();
                    text.replace_range(pos..pos + 1, &special.to_string());
                    let mut out = Vec::new();
                    write_str(&mut out, &text);
                    assert_eq!(out, serde_json::to_vec(&text).expect("serialize"), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn escape_masks_mark_exactly_the_escaped_bytes() {
        for pos in 0..8 {
            for b in 0..=255u8 {
                for fill in [b'a', b'"', 0x01, 0xFF, b'\\'] {
                    let mut word = [fill; 8];
                    word[pos] = b;
                    let mask = escape_mask(u64::from_le_bytes(word));
                    for (k, &x) in word.iter().enumerate() {
                        assert_eq!(
                            mask >> (8 * k + 7) & 1 == 1,
                            ESCAPE[x as usize] != 0,
                            "{word:?} byte {k}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn escape_test_finds_every_escaped_byte() {
        for pos in 0..8 {
            for b in 0..=255u8 {
                let mut word = [b'a'; 8];
                word[pos] = b;
                assert_eq!(
                    needs_escape(u64::from_le_bytes(word)),
                    ESCAPE[b as usize] != 0,
                    "{b} at {pos}"
                );
            }
        }
    }

    #[test]
    fn path_keys_map_every_byte_like_path_byte() {
        fn reference(path: &str) -> u128 {
            let mut bytes = [0u8; 16];
            for (slot, &b) in bytes[..14].iter_mut().zip(path.as_bytes()) {
                *slot = path_byte(b);
            }
            u128::from_be_bytes(bytes)
        }
        for len in 0..20 {
            for pos in 0..len.max(1) {
                for b in 0..0x80u8 {
                    let mut text: Vec<u8> = (0..len).map(|i| b"event.category.x"[i % 16]).collect();
                    if pos < len {
                        text[pos] = b;
                    }
                    let text = String::from_utf8(text).expect("ascii");
                    assert_eq!(path_key(&text), reference(&text), "{text:?}");
                }
            }
        }
        for text in ["é.a", "aé", "source.géo.city_name", "\u{7f}.\u{80}x"] {
            assert_eq!(path_key(text), reference(text), "{text:?}");
        }
    }

    #[test]
    fn dots_are_found_from_any_offset() {
        for text in [
            "",
            ".",
            "a",
            "a.b",
            "event.category",
            "abcdefgh.ijklmnop.q",
            "source.geo.city_name",
            "x/.y..z",
            "é.a/b",
        ] {
            let b = text.as_bytes();
            for from in 0..=b.len() {
                let expected = b[from..].iter().position(|&c| c == b'.').map(|k| from + k);
                assert_eq!(find_dot(b, from), expected, "{text:?} from {from}");
            }
        }
    }

    #[test]
    fn path_keys_order_like_paths() {
        let paths = [
            "a",
            "a.b",
            "a.b.c",
            "a.b-c",
            "a-b",
            "ab",
            "abcdefgh",
            "abcdefgh.i",
            "abcdefghi",
            "abcdefghijklmnop",
            "abcdefghijklmnop.q",
            "abcdefghijklmnopq",
            "abcdefghijklmno.",
            "a\u{0}",
            "",
        ];
        for x in paths {
            for y in paths {
                if path_key(x) < path_key(y) {
                    assert_eq!(cmp_path(x, y), std::cmp::Ordering::Less, "{x:?} < {y:?}");
                }
                assert_eq!(cmp_path(x, y) == std::cmp::Ordering::Equal, x == y, "{x:?} {y:?}");
            }
        }
        assert!(under_parts("event.kind", &["event", "kind"]));
        assert!(under_parts("event.kind.x", &["event", "kind"]));
        assert!(!under_parts("event.kinds", &["event", "kind"]));
        assert!(!under_parts("eventkind", &["event", "kind"]));
    }

    #[test]
    fn vendor_copies_past_the_key_cache_capacity_match_the_built_document() {
        let mut record = Map::new();
        for i in 0..SnakeCache::CAPACITY + 300 {
            record.insert(
                format!("fieldNumber{i}"),
                json!({"innerKey": i, "IPAddress": "192.0.2.1"}),
            );
        }
        record.insert("user_id".into(), json!("u"));
        record.insert("UserId".into(), json!("v"));
        let record = Value::Object(record);
        for _ in 0..2 {
            let mut doc = Doc::new();
            doc.put_str("a.b", Some("x"));
            let mut out = Vec::new();
            doc.write_json(&mut out, Some((Cow::Borrowed("v"), &record, 2)));
            let mut built = Doc::new();
            built.put_str("a.b", Some("x"));
            built.merge(Cow::Borrowed("v"), snake_keys(&record, 2));
            assert_eq!(out, serde_json::to_vec(&built.finish()).expect("serialize"));
        }
    }

    #[test]
    fn documents_of_a_cached_shape_keep_their_own_paths() {
        // Same sequence of writes, computed paths with other texts: each sorts by its own.
        for (x, y) in [("b.z", "a.z"), ("a.z", "b.z"), ("b.z", "a.z"), ("a.z", "a.z")] {
            let mut doc = Doc::new();
            doc.put_str("m.n", Some("1"));
            doc.put_str(x.to_string(), Some("2"));
            doc.put_str(y.to_string(), Some("3"));
            doc.put_str("c", Some("4"));
            let mut built = Doc::new();
            built.put_str("m.n", Some("1"));
            built.put_str(x.to_string(), Some("2"));
            built.put_str(y.to_string(), Some("3"));
            built.put_str("c", Some("4"));
            let mut out = Vec::new();
            doc.write_json(&mut out, None);
            assert_eq!(out, serde_json::to_vec(&built.finish()).expect("serialize"), "{x} {y}");
        }
    }

    #[test]
    fn cached_skeletons_write_each_document_own_values() {
        for round in 0..3 {
            let record = json!({"EventTime": format!("t{round}"), "nested": {"InnerKey": round}, "a": "\"q\""});
            let fill = |doc: &mut Doc<'_>| {
                doc.put_str("event.kind", Some("alert"));
                doc.put_i64("event.severity", Some(round));
                doc.put_str("m365_defender.event.extra_field", Some("x"));
                doc.put_str("user.name", Some("u"));
                doc.relate_user(Some("u"));
                doc.put_str("zeta", if round == 1 { Some("only once") } else { None });
            };
            let mut doc = Doc::new();
            fill(&mut doc);
            let mut out = Vec::new();
            doc.write_json(&mut out, Some((Cow::Borrowed("m365_defender.event"), &record, 1)));
            let mut built = Doc::new();
            fill(&mut built);
            built.merge(Cow::Borrowed("m365_defender.event"), snake_keys(&record, 1));
            assert_eq!(
                String::from_utf8(out).expect("utf-8"),
                serde_json::to_string(&built.finish()).expect("serialize"),
                "round {round}"
            );
            // The same paths without a vendor copy.
            let mut doc = Doc::new();
            fill(&mut doc);
            let mut out = Vec::new();
            doc.write_json(&mut out, None);
            let mut built = Doc::new();
            fill(&mut built);
            assert_eq!(
                out,
                serde_json::to_vec(&built.finish()).expect("serialize"),
                "round {round}"
            );
        }
    }

    #[test]
    fn later_writes_win_and_children_merge_into_objects() {
        let mut doc = Doc::new();
        doc.put("a.b", json!(1));
        doc.put("a.b", json!(2));
        doc.put("a.c-d", json!(3));
        doc.put("a.c.e", json!(4));
        doc.merge(Cow::Borrowed("v"), json!({"x": 1, "y": 2}));
        doc.put("v.y", json!(3));
        doc.relate_user(Some("u"));
        doc.relate_user(Some("u"));
        assert_eq!(
            doc.finish(),
            json!({"a": {"b": 2, "c-d": 3, "c": {"e": 4}}, "v": {"x": 1, "y": 3}, "related": {"user": ["u"]}})
        );
    }
}
