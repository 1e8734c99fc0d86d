//! Fabric's logging ("flogging") on top of `tracing`: `FABRIC_LOGGING_SPEC` levels per logger,
//! `FABRIC_LOGGING_FORMAT` output, and run-time spec changes for operations `/logspec`.
//!
//! Code logs with `tracing` and uses Fabric's logger name as the target:
//! `tracing::info!(target: "nodeCmd", func = "serve", "Starting peer:\n{}", text)`. The optional
//! `func` field stands in for Go's function name (`%{shortfunc}`); without it the last segment of
//! the module path is used. Other fields are appended to the line (`key=value`), as Fabric does
//! for `Infow`/`With`. Libraries' events (module-path targets such as `h2::codec`) are filtered
//! and printed under Fabric-style names: the gRPC stack as `grpc`, others dotted (`names.rs`).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, UNIX_EPOCH};
//! use peer_core::logging::{self, LoggingConfig, MemorySink};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let clock = Arc::new(|| UNIX_EPOCH + Duration::from_millis(1_714_557_600_123));
//! let output = MemorySink::new();
//! let config = LoggingConfig { spec: "gossip=debug:info".into(), format: String::new() };
//! let (layer, handle) = logging::layer(&config, clock, output.sink()).unwrap();
//! tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
//!     tracing::info!(target: "nodeCmd", func = "serve", "Starting peer:");
//!     tracing::debug!(target: "nodeCmd", "not shown at INFO");
//! });
//! assert_eq!(
//!     output.lines(),
//!     ["\x1b[34m2024-05-01 10:00:00.123 UTC [nodeCmd] serve -> INFO 001\x1b[0m Starting peer:"]
//! );
//! assert_eq!(handle.spec(), "gossip=debug:info");
//! ```
//!
//! The module reads no clock, no environment and no global state: the caller passes the spec
//! and format strings, a wall-clock function and a sink. The CLI passes the system clock and
//! stderr and installs the layer globally; the simulator passes its simulated clock and a buffer
//! and installs it per run. Each [`layer`] call is its own "Logging", with its own `%{id}`
//! counter. Differences from Fabric, on purpose: an invalid spec or format is an error, not a
//! panic; an unknown `%{verb}` or an unterminated `%{` is an error rather than literal text;
//! PAYLOAD prints as `PAYL`/`payload` (zap would print `LEVEL(-2)`); levels above ERROR (DPANIC,
//! PANIC, FATAL) filter as ERROR because `tracing` has nothing above it.

mod format;
mod layer;
pub mod names;
mod spec;

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

pub use format::{DEFAULT_FORMAT, FormatError};
pub use layer::{FabricLayer, LoggingHandle};
pub use spec::{LogLevel, LogSpec, LogSpecError};

/// The wall clock log lines are stamped with (the system clock in the CLI, simulated time in the
/// simulator). Called once per written record.
pub type WallClockFn = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Logging settings: the values of `FABRIC_LOGGING_SPEC` and `FABRIC_LOGGING_FORMAT`; empty
/// strings mean Fabric's defaults (`info` and [`DEFAULT_FORMAT`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoggingConfig {
    pub spec: String,
    pub format: String,
}

/// Why logging could not be set up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoggingError {
    /// `FABRIC_LOGGING_SPEC` does not parse.
    #[error(transparent)]
    Spec(#[from] LogSpecError),
    /// `FABRIC_LOGGING_FORMAT` does not parse (Fabric's message only names the verb; this one
    /// also says where it came from).
    #[error("invalid FABRIC_LOGGING_FORMAT {format:?}: {error}")]
    Format { format: String, error: FormatError },
}

/// Builds the layer for `config` and a handle for changing its spec later. The format is checked
/// before the spec, as Fabric does.
///
/// Install it with `tracing_subscriber::registry().with(layer)` and `.init()` (CLI) or
/// `tracing::subscriber::with_default`/`set_default` (simulator, tests).
pub fn layer(config: &LoggingConfig, clock: WallClockFn, sink: Sink) -> Result<(FabricLayer, LoggingHandle), LoggingError> {
    let format = format::Format::parse(&config.format).map_err(|error| LoggingError::Format { format: config.format.clone(), error })?;
    let spec = LogSpec::parse(&config.spec)?;
    let layer = FabricLayer::new(spec, format, clock, sink);
    let handle = layer.handle();
    Ok((layer, handle))
}

/// Where log lines go. Each record is written with one `write_all` and a `flush` while the lock
/// is held, so lines from concurrent tasks never interleave.
#[derive(Clone)]
pub struct Sink(Arc<Mutex<dyn Write + Send>>);

impl Sink {
    /// A sink writing to `writer`.
    pub fn new(writer: impl Write + Send + 'static) -> Sink {
        Sink(Arc::new(Mutex::new(writer)))
    }

    /// A sink writing to a writer the caller shares.
    pub fn shared(writer: Arc<Mutex<dyn Write + Send>>) -> Sink {
        Sink(writer)
    }

    /// The process's standard error, Fabric's log destination.
    pub fn stderr() -> Sink {
        Sink::new(io::stderr())
    }

    fn lock(&self) -> MutexGuard<'_, dyn Write + Send + 'static> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

impl From<MemorySink> for Sink {
    fn from(memory: MemorySink) -> Sink {
        Sink::new(memory)
    }
}

/// An in-memory log destination for tests and the simulator; clones share one buffer.
#[derive(Clone, Debug, Default)]
pub struct MemorySink(Arc<Mutex<Vec<u8>>>);

impl MemorySink {
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// A [`Sink`] writing into this buffer.
    pub fn sink(&self) -> Sink {
        Sink::from(self.clone())
    }

    /// Everything written so far (invalid UTF-8 replaced).
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.buffer()).into_owned()
    }

    /// Everything written so far, one entry per line, without the newlines.
    pub fn lines(&self) -> Vec<String> {
        self.contents().lines().map(str::to_string).collect()
    }

    /// Returns everything written so far and empties the buffer.
    pub fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.buffer());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn buffer(&self) -> MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Write for MemorySink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
