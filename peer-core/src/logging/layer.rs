//! The `tracing` side: [`FabricLayer`] filters events by the current spec and writes them in the
//! configured format; [`LoggingHandle`] reads and replaces the spec while running.
//!
//! Filtering happens in [`Layer::enabled`], so a disabled event costs one read lock and one map
//! lookup (levels are cached per target and the cache is dropped on every spec change). The
//! layer also reports the most verbose level of the spec as its `max_level_hint`, so `tracing`
//! skips disabled levels before reaching us; a spec change therefore rebuilds `tracing`'s
//! callsite interest cache. Spans are not filtered or printed, but their fields are appended to
//! the lines of the events inside them (Fabric's `logger.With(...)` context), root span first.
//!
//! The layer also counts, per level, the events checked against the spec (every event `tracing`
//! asks it about; `tracing` skips levels more verbose than any in the spec before that, as zap's
//! level enabler does) and the events written: Fabric's `logging_entries_checked{level}` and
//! `logging_entries_written{level}`, registered through [`LoggingHandle::register_metrics`]. The
//! level label is zap's name, `payload` for PAYLOAD as in the spec. Counting is an atomic add.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use tracing::field::{Field, Visit};
use tracing::span;
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::format::{FieldValue, Format, Record};
use super::names::logger_name;
use super::spec::{LogSpec, LogSpecError};
use super::{Sink, WallClockFn};

/// At most this many per-target levels are cached; past it the cache starts over. Targets are
/// static strings in practice, so this only guards against a flood of dynamic ones.
const LEVEL_CACHE_LIMIT: usize = 1024;

/// State shared by a [`FabricLayer`] and its [`LoggingHandle`]s: one "Logging" in Fabric terms.
struct Shared {
    filter: RwLock<Filter>,
    format: Format,
    clock: WallClockFn,
    sink: Sink,
    /// `%{id}`: records written by this instance so far. Per instance, not global, so simulated
    /// peers in one process number their lines independently.
    sequence: AtomicU64,
    checked: LevelCounts,
    written: LevelCounts,
}

/// One counter per `tracing` level, in a family labelled `level`.
struct LevelCounts {
    family: Family<Vec<(String, String)>, Counter>,
    /// By [`level_index`]: the family's counters, looked up once.
    by_level: [Counter; 5],
}

impl LevelCounts {
    fn new() -> LevelCounts {
        let family: Family<Vec<(String, String)>, Counter> = Family::default();
        let by_level = LEVEL_NAMES.map(|name| family.get_or_create_owned(&vec![("level".to_string(), name.to_string())]));
        LevelCounts { family, by_level }
    }

    fn count(&self, level: tracing::Level) {
        self.by_level[level_index(level)].inc();
    }
}

/// The `level` label of each `tracing` level, by [`level_index`].
const LEVEL_NAMES: [&str; 5] = ["error", "warn", "info", "debug", "payload"];

fn level_index(level: tracing::Level) -> usize {
    match level {
        tracing::Level::ERROR => 0,
        tracing::Level::WARN => 1,
        tracing::Level::INFO => 2,
        tracing::Level::DEBUG => 3,
        tracing::Level::TRACE => 4,
    }
}

struct Filter {
    spec: LogSpec,
    /// Effective level per target under `spec`.
    cache: BTreeMap<String, tracing::Level>,
}

impl Shared {
    fn level_for(&self, target: &str) -> tracing::Level {
        {
            let filter = self.filter.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(level) = filter.cache.get(target) {
                return *level;
            }
        }
        // Computed under the write lock so a concurrent `set_spec` cannot leave a stale entry.
        let mut filter = self.filter.write().unwrap_or_else(PoisonError::into_inner);
        // Cached by the raw target; resolved under its Fabric name (`h2::codec` is `grpc`).
        let level = filter.spec.level_for(&logger_name(target));
        if filter.cache.len() >= LEVEL_CACHE_LIMIT {
            filter.cache.clear();
        }
        filter.cache.insert(target.to_string(), level);
        level
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.level_for(metadata.target())
    }
}

/// The `tracing_subscriber` layer that does Fabric's logging. Build it with [`super::layer`].
///
/// It acts as a filter for the whole subscriber it is part of: events its spec disables are
/// disabled for every other layer too.
pub struct FabricLayer {
    shared: Arc<Shared>,
}

/// Reads and changes the logging spec of a running [`FabricLayer`] (operations `/logspec`).
#[derive(Clone)]
pub struct LoggingHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for FabricLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FabricLayer").field("spec", &self.handle().spec()).finish_non_exhaustive()
    }
}

impl fmt::Debug for LoggingHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggingHandle").field("spec", &self.spec()).finish_non_exhaustive()
    }
}

impl FabricLayer {
    pub(super) fn new(spec: LogSpec, format: Format, clock: WallClockFn, sink: Sink) -> FabricLayer {
        let filter = RwLock::new(Filter { spec, cache: BTreeMap::new() });
        let (checked, written) = (LevelCounts::new(), LevelCounts::new());
        FabricLayer { shared: Arc::new(Shared { filter, format, clock, sink, sequence: AtomicU64::new(0), checked, written }) }
    }

    /// Another handle on this layer's spec.
    pub fn handle(&self) -> LoggingHandle {
        LoggingHandle { shared: Arc::clone(&self.shared) }
    }
}

impl LoggingHandle {
    /// The active spec in Fabric's normalized form, as `GET /logspec` returns it
    /// (`gossip=debug:info`; the empty spec reads back as `info`).
    pub fn spec(&self) -> String {
        self.log_spec().to_string()
    }

    /// The active spec, parsed; [`LogSpec::as_str`] gives it exactly as it was set.
    pub fn log_spec(&self) -> LogSpec {
        self.shared.filter.read().unwrap_or_else(PoisonError::into_inner).spec.clone()
    }

    /// Replaces the spec (`PUT /logspec`). Events from then on are filtered by the new spec; an
    /// invalid spec changes nothing.
    pub fn set_spec(&self, spec: &str) -> Result<(), LogSpecError> {
        let spec = LogSpec::parse(spec)?;
        {
            let mut filter = self.shared.filter.write().unwrap_or_else(PoisonError::into_inner);
            filter.spec = spec;
            filter.cache.clear();
        }
        // Our max_level_hint may have changed: have tracing ask every subscriber again. Called
        // with no lock held, since it calls back into `max_level_hint`.
        tracing::callsite::rebuild_interest_cache();
        Ok(())
    }

    /// Whether an event at `level` for logger `target` (a Fabric name, or a library's module
    /// path, which is filtered under its Fabric name) would be written now.
    pub fn enabled(&self, target: &str, level: tracing::Level) -> bool {
        level <= self.shared.level_for(target)
    }

    /// Registers `logging_entries_checked{level}` and `logging_entries_written{level}` (Fabric's
    /// names): the events this layer checked against the spec, and those it wrote.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "logging_entries_checked",
            "Log events checked against the logging spec, by level",
            self.shared.checked.family.clone(),
        );
        registry.register("logging_entries_written", "Log events written, by level", self.shared.written.family.clone());
    }
}

impl<S> Layer<S> for FabricLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, _metadata: &'static Metadata<'static>) -> Interest {
        // Never cache a yes/no per callsite: the spec can change at any time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        if metadata.is_span() {
            return true;
        }
        self.shared.checked.count(*metadata.level());
        self.shared.enabled(metadata)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        let filter = self.shared.filter.read().unwrap_or_else(PoisonError::into_inner);
        Some(filter.spec.max_level().into())
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        // Another FabricLayer on the same registry may have stored them already.
        if extensions.get_mut::<SpanFields>().is_none() {
            let mut collector = FieldCollector::default();
            attrs.record(&mut collector);
            extensions.insert(SpanFields(collector.fields));
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut collector = FieldCollector::default();
        values.record(&mut collector);
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            for (name, value) in collector.fields {
                match fields.iter_mut().find(|(existing, _)| *existing == name) {
                    Some(slot) => slot.1 = value,
                    None => fields.push((name, value)),
                }
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        // Already filtered by `enabled` when we are the subscriber's filter; checked again in
        // case this layer sits behind a per-layer filter that let the event through.
        if !self.shared.enabled(metadata) {
            return;
        }
        let mut collector = FieldCollector::default();
        event.record(&mut collector);

        let mut fields = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(span_fields)) = span.extensions().get::<SpanFields>() {
                    fields.extend(span_fields.iter().cloned());
                }
            }
        }
        fields.append(&mut collector.fields);

        let logger = logger_name(metadata.target());
        let module_path = metadata.module_path();
        let short_module = module_path.map(|path| path.rsplit("::").next().unwrap_or(path));
        let record = Record {
            level: *metadata.level(),
            time: (self.shared.clock)(),
            logger: &logger,
            func: collector.func.as_deref().or(short_module),
            caller: collector.func.as_deref().or(module_path),
            message: &collector.message,
            fields: &fields,
        };

        let mut line = String::with_capacity(128);
        // Numbered and written under the sink's lock, so ids appear in order in the output.
        let mut sink = self.shared.sink.lock();
        let sequence = self.shared.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        self.shared.format.render(&record, sequence, &mut line);
        // Like zap, a failing sink does not stop the program; there is nowhere to report it.
        let _ = sink.write_all(line.as_bytes()).and_then(|()| sink.flush());
        self.shared.written.count(*metadata.level());
    }
}

/// Fields of a span, kept in its extensions for the events inside it.
struct SpanFields(Vec<(&'static str, FieldValue)>);

/// Splits an event's fields into the message, Fabric's `func`, and the rest.
#[derive(Default)]
struct FieldCollector {
    message: String,
    func: Option<String>,
    fields: Vec<(&'static str, FieldValue)>,
}

impl FieldCollector {
    fn put(&mut self, field: &Field, value: FieldValue) {
        match (field.name(), value) {
            ("message", FieldValue::Str(text)) => self.message = text,
            ("func", FieldValue::Str(text)) => self.func = Some(text),
            (name, value) => self.fields.push((name, value)),
        }
    }
}

impl Visit for FieldCollector {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, FieldValue::F64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, FieldValue::U64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, FieldValue::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, FieldValue::Str(value.to_string()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, FieldValue::Str(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` fields and the message arrive here; their Debug is their Display.
        self.put(field, FieldValue::Str(format!("{value:?}")));
    }
}
