//! The session pool: one upstream session per connector and credential, reused by every call
//! and conversation, reconnected with backoff when the server goes away, closed when idle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rand::Rng;
use rmcp::model::{ClientConfig, ProtocolVersion, ServerNotification, SubscriptionFilter};
use switchboard_domain::ConnectorId;
use switchboard_net::SafeClient;
use tokio::sync::{Semaphore, broadcast};

use crate::catalog::{Catalog, discover};
use crate::error::{ConnectError, Result};
use crate::handler::{Handler, ListKind, ServerRequests, client_config};
use crate::session::{self, Session, SessionConfig};
use crate::target::{SessionKey, Target};

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Opening sessions.
    pub session: SessionConfig,
    /// A session unused this long is closed.
    pub idle_timeout: Duration,
    /// How long a discovered catalog is trusted without a list-changed notification.
    pub catalog_ttl: Duration,
    /// Most calls in flight per connector and credential at once; more wait their turn.
    pub max_concurrent_calls: usize,
    /// First wait after a failed connection; doubles with every further failure.
    pub backoff_base: Duration,
    /// Longest wait between connection attempts.
    pub backoff_max: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            session: SessionConfig::default(),
            idle_timeout: Duration::from_secs(300),
            catalog_ttl: Duration::from_secs(300),
            max_concurrent_calls: 16,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// A server said one of its lists changed (or a cached catalog was dropped for that reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListChanged {
    /// The connector.
    pub connector: ConnectorId,
    /// Which list.
    pub kind: ListKind,
}

struct Connection {
    session: Option<Arc<Session>>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
}

struct Slot {
    connection: tokio::sync::Mutex<Connection>,
    permits: Semaphore,
    last_used: AtomicU64,
    catalog: Mutex<Option<(Arc<Catalog>, Instant)>>,
}

pub(crate) struct Pool {
    slots: Mutex<HashMap<SessionKey, Arc<Slot>>>,
    client: SafeClient,
    config: PoolConfig,
    default_handler: Arc<dyn ServerRequests>,
    /// How the engine describes itself to servers, built once and shared by every session.
    client_info: Arc<ClientConfig>,
    events: broadcast::Sender<ListChanged>,
    started: Instant,
    closed: AtomicBool,
}

impl Pool {
    pub(crate) fn new(
        client: SafeClient,
        config: PoolConfig,
        default_handler: Arc<dyn ServerRequests>,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(256);
        let pool = Arc::new(Self {
            slots: Mutex::new(HashMap::new()),
            client,
            config,
            client_info: client_config(&*default_handler),
            default_handler,
            events,
            started: Instant::now(),
            closed: AtomicBool::new(false),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(reap_idle(Arc::downgrade(&pool)));
        }
        pool
    }

    pub(crate) fn client(&self) -> &SafeClient {
        &self.client
    }

    pub(crate) fn config(&self) -> &PoolConfig {
        &self.config
    }

    pub(crate) fn default_handler(&self) -> Arc<dyn ServerRequests> {
        self.default_handler.clone()
    }

    pub(crate) fn client_info(&self) -> Arc<ClientConfig> {
        self.client_info.clone()
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ListChanged> {
        self.events.subscribe()
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn slot(&self, key: &SessionKey) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        // Every call comes here; only the first for a key needs an owned copy of it.
        if let Some(slot) = slots.get(key) {
            return slot.clone();
        }
        slots
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Slot {
                    connection: tokio::sync::Mutex::new(Connection {
                        session: None,
                        failures: 0,
                        retry_at: None,
                        last_error: None,
                    }),
                    permits: Semaphore::new(self.config.max_concurrent_calls.max(1)),
                    last_used: AtomicU64::new(0),
                    catalog: Mutex::new(None),
                })
            })
            .clone()
    }

    /// How many sessions are open.
    pub(crate) async fn open_sessions(&self) -> usize {
        let slots: Vec<_> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut n = 0;
        for slot in slots {
            if slot
                .connection
                .lock()
                .await
                .session
                .as_ref()
                .is_some_and(|s| s.is_alive())
            {
                n += 1;
            }
        }
        n
    }

    /// Runs `op` on the pooled session for `key`, opening or reopening it as needed, within the
    /// key's concurrency bound.
    pub(crate) async fn with_session<T, F, Fut>(
        &self,
        key: &SessionKey,
        target: &Target,
        op: F,
    ) -> Result<T>
    where
        F: FnOnce(Arc<Session>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let slot = self.slot(key);
        let _permit = slot
            .permits
            .acquire()
            .await
            .map_err(|_| ConnectError::ShuttingDown)?;
        let session = self.session(key, target, &slot).await?;
        slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        let result = op(session.clone()).await;
        slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        // A stateless or streamable transport can outlive the server: each request is its own
        // HTTP exchange, so a server that went away shows up as failed requests, not as a closed
        // transport. Either way the session is dropped, and the failure counts toward backoff so
        // callers do not each hammer a dead server.
        let lost = matches!(
            &result,
            Err(ConnectError::Disconnected(_) | ConnectError::Net(_))
        );
        if lost || !session.is_alive() {
            let mut connection = slot.connection.lock().await;
            if connection
                .session
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(s, &session))
            {
                // Closed in the background: a server that is still there gets its DELETE.
                if let Some(old) = connection.session.take() {
                    tokio::spawn(async move { old.close().await });
                }
                if let Err(e) = &result
                    && lost
                {
                    self.note_failure(&mut connection, e);
                }
            }
        }
        result
    }

    async fn session(
        &self,
        key: &SessionKey,
        target: &Target,
        slot: &Arc<Slot>,
    ) -> Result<Arc<Session>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ConnectError::ShuttingDown);
        }
        // One lock per key: concurrent callers wait for a single connection attempt instead of
        // each opening their own.
        let mut connection = slot.connection.lock().await;
        if let Some(s) = &connection.session {
            if s.is_alive() {
                return Ok(s.clone());
            }
            connection.session = None;
        }
        if let Some(at) = connection.retry_at {
            let now = Instant::now();
            if at > now {
                return Err(ConnectError::BackingOff {
                    retry_in_secs: (at - now).as_secs().max(1),
                    last: connection.last_error.clone().unwrap_or_default(),
                });
            }
        }
        let handler = self.handler_for(key.connector, slot);
        match session::open(target, &self.client, handler, &self.config.session).await {
            Ok(s) => {
                let s = Arc::new(s);
                Self::listen_for_changes(&s);
                connection.session = Some(s.clone());
                connection.failures = 0;
                connection.retry_at = None;
                connection.last_error = None;
                // What was cached came from the old session; the server may have changed since.
                *slot.catalog.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(s)
            }
            Err(e) => {
                self.note_failure(&mut connection, &e);
                Err(e)
            }
        }
    }

    fn note_failure(&self, connection: &mut Connection, e: &ConnectError) {
        if e.is_retryable() {
            connection.failures = connection.failures.saturating_add(1);
            connection.retry_at = Some(Instant::now() + self.backoff(connection.failures));
            connection.last_error = Some(e.to_string());
        }
    }

    /// Exponential backoff with full jitter: a random wait up to base·2ⁿ⁻¹, capped, so many
    /// replicas retrying one server do not arrive together.
    fn backoff(&self, failures: u32) -> Duration {
        let exp = self
            .config
            .backoff_base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        let cap = exp.min(self.config.backoff_max);
        let ms = cap.as_millis().max(1) as u64;
        Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
    }

    fn handler_for(&self, connector: ConnectorId, slot: &Arc<Slot>) -> Handler {
        let events = self.events.clone();
        let slot = Arc::downgrade(slot);
        let on_change = Arc::new(move |kind: ListKind| {
            if let Some(slot) = slot.upgrade() {
                *slot.catalog.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            let _ = events.send(ListChanged { connector, kind });
        });
        Handler::new(
            self.default_handler.clone(),
            on_change,
            self.client_info.clone(),
        )
    }

    /// Stateless (2026-07-28) servers send list changes only on a `subscriptions/listen`
    /// stream the client opens; session-based servers use the session's GET stream, which
    /// rmcp opens itself.
    fn listen_for_changes(session: &Arc<Session>) {
        let server = &session.server;
        if server.protocol_version != ProtocolVersion::V_2026_07_28 {
            return;
        }
        let caps = &server.capabilities;
        let mut filter = SubscriptionFilter::builder();
        if caps.tools.as_ref().and_then(|c| c.list_changed) == Some(true) {
            filter = filter.tools_list_changed();
        }
        if caps.prompts.as_ref().and_then(|c| c.list_changed) == Some(true) {
            filter = filter.prompts_list_changed();
        }
        if caps.resources.as_ref().and_then(|c| c.list_changed) == Some(true) {
            filter = filter.resources_list_changed();
        }
        let filter = filter.build();
        if filter == SubscriptionFilter::new() {
            return;
        }
        let peer = session.peer.clone();
        let on_change = session.handler.0.on_list_changed.clone();
        tokio::spawn(async move {
            let Ok(mut subscription) = peer.listen(filter).await else {
                return;
            };
            while let Ok(Some(note)) = subscription.next().await {
                let kind = match note {
                    ServerNotification::ToolListChangedNotification(_) => ListKind::Tools,
                    ServerNotification::PromptListChangedNotification(_) => ListKind::Prompts,
                    ServerNotification::ResourceListChangedNotification(_) => ListKind::Resources,
                    _ => continue,
                };
                on_change(kind);
            }
        });
    }

    /// The catalog of `key`'s server, from cache while it is fresh.
    pub(crate) async fn catalog(
        &self,
        key: &SessionKey,
        target: &Target,
        refresh: bool,
    ) -> Result<Arc<Catalog>> {
        let slot = self.slot(key);
        if !refresh
            && let Some((catalog, at)) = slot
                .catalog
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            && at.elapsed()
                < catalog.fresh_for.map_or(self.config.catalog_ttl, |hint| {
                    hint.min(self.config.catalog_ttl)
                })
        {
            return Ok(catalog);
        }
        let catalog = Arc::new(
            self.with_session(key, target, |s| async move { discover(&s).await })
                .await?,
        );
        *slot.catalog.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((catalog.clone(), Instant::now()));
        Ok(catalog)
    }

    /// Closes every session of a connector (after it was disabled, deleted or re-credentialed).
    pub(crate) async fn forget(&self, connector: ConnectorId) {
        let removed: Vec<Arc<Slot>> = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<_> = slots
                .keys()
                .filter(|k| k.connector == connector)
                .cloned()
                .collect();
            keys.into_iter().filter_map(|k| slots.remove(&k)).collect()
        };
        for slot in removed {
            if let Some(s) = slot.connection.lock().await.session.take() {
                s.close().await;
            }
        }
    }

    /// Closes every session, ending session-based ones with DELETE, and refuses new work.
    pub(crate) async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let all: Vec<Arc<Slot>> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        let closing = all.into_iter().map(|slot| async move {
            if let Some(s) = slot.connection.lock().await.session.take() {
                s.close().await;
            }
        });
        futures::future::join_all(closing).await;
    }

    async fn close_idle(&self) {
        let idle_ms = self.config.idle_timeout.as_millis() as u64;
        let now = self.now_ms();
        let slots: Vec<_> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for slot in slots {
            if now.saturating_sub(slot.last_used.load(Ordering::Relaxed)) < idle_ms {
                continue;
            }
            // Busy slots hold their connection lock or permits; skip them rather than wait.
            if slot.permits.available_permits() < self.config.max_concurrent_calls.max(1) {
                continue;
            }
            let Ok(mut connection) = slot.connection.try_lock() else {
                continue;
            };
            if let Some(s) = connection.session.take() {
                s.close().await;
            }
        }
    }
}

async fn reap_idle(pool: Weak<Pool>) {
    loop {
        let every = match pool.upgrade() {
            Some(p) => (p.config.idle_timeout / 4)
                .clamp(Duration::from_millis(200), Duration::from_secs(30)),
            None => return,
        };
        tokio::time::sleep(every).await;
        match pool.upgrade() {
            Some(p) if !p.closed.load(Ordering::Acquire) => p.close_idle().await,
            _ => return,
        }
    }
}
