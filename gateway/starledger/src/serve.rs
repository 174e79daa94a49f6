//! `starledger serve`: one process that runs the HTTP gateway, the projectors, the cache
//! projector, the reconciler, the fulfilment worker and (with `TELEGRAM_TOKEN`) the Telegram
//! bot, and stops them in order.
//!
//! Start-up opens the databases, starts the background work, binds the port and only then
//! answers. Shutdown (SIGTERM/SIGINT, or [`Application::stop`]) stops accepting, lets
//! requests in flight finish (each has awaited its commit, so nothing acknowledged is left
//! in the batch writer), then stops the reconciler and the projectors after their current
//! step.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use starledger_ledger::commands::Ledger;
use starledger_ledger::store::CommitMode;
use starledger_projections::cache::ReadCache;
use starledger_projections::queries::Queries;
use starledger_projections::runtime::{Runner, RunnerSettings};
use starledger_projections::{cache_projector, cache_tail};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::server::{HeleketMode, ServerConfig};
use crate::config::Config;
use starledger_bot::state::BotState;
use starledger_heleket::client::{HeleketClient, HeleketSettings as ClientSettings};
use starledger_heleket::sandbox::Sandbox;
use starledger_heleket::PaymentProvider;
use starledger_http::admin::RebuildJobs;
use starledger_http::audit_source::{AuditSource, Copy};
use starledger_http::auth::ApiKeys;
use starledger_http::deadline::RequestTimeout;
use starledger_http::state::{AppState, HeleketSettings, Limits};
use starledger_projections::reactor::ReactorContext;
use starledger_projections::storage::{self, OpenError};
use starledger_shop::inbox::UpdateInbox;
use starledger_shop::reconciler::Reconciler;
use starledger_shop::settlement::Settlement;
use starledger_shop::{InvoiceSettings, Shop};

/// Projection lag, in events, above which `/readyz` reports not ready.
pub const READY_MAX_LAG: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the databases: {0}")]
    Storage(#[from] OpenError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("cannot set up the payment provider: {0}")]
    Provider(String),
    #[error("cannot set up the Telegram bot: {0}")]
    Bot(String),
    #[error("configuration error: {0}")]
    Config(#[from] starledger_settings::ConfigError),
}

/// A running gateway.
pub struct Application {
    port: u16,
    server: Server,
    stop: watch::Sender<bool>,
    runner: Runner,
    background: Vec<JoinHandle<()>>,
    state: web::Data<AppState>,
}

impl Application {
    /// Opens everything and binds the port (`WEBHOOK_PORT=0` picks a free one).
    pub async fn build(config: Config, server: ServerConfig) -> Result<Self, StartError> {
        let databases = storage::open(&config.storage, CommitMode::default()).await?;
        // Projection reads on a standby, if one is configured; everything else on the primary.
        let replica = match (&config.database_read_url, &config.storage) {
            (Some(url), starledger_projections::storage::Storage::Postgres { pool_size, .. }) => {
                Some(storage::open_replica(url, *pool_size).await?)
            }
            _ => None,
        };
        let (events, read) = (databases.events, databases.read);
        let address = format!("{}:{}", server.host, server.port);
        let listener = TcpListener::bind(&address).map_err(|source| StartError::Bind {
            address: address.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind { address, source })?
            .port();
        let own_base = format!("http://127.0.0.1:{port}");

        let (provider, sandbox) = payment_provider(&server, &own_base)?;
        let callback_url = server
            .heleket
            .callback_url
            .clone()
            .unwrap_or_else(|| format!("{own_base}/webhooks/heleket"));

        let ledger = Arc::new(Ledger::new(events.clone()));
        let settlement = Arc::new(Settlement {
            ledger: ledger.clone(),
            provider: provider.clone(),
            currency: config.currency.clone(),
            overpay_tolerance_percent: server.heleket.overpay_tolerance_percent,
            confirm_webhooks: server.heleket.confirm_webhooks,
        });
        if !server.heleket.confirm_webhooks
            && matches!(
                server.heleket.mode,
                crate::config::server::HeleketMode::Live { .. }
            )
        {
            tracing::warn!("HELEKET_CONFIRM_WEBHOOKS is off in live mode: a signed webhook is credited without asking payment/info");
        }
        let runner = Runner::start(events.clone(), read.clone(), RunnerSettings::default());
        let cache = Arc::new(ReadCache::new(config.cache_settings()).await);
        // Before any read: Redis must hold this ledger's history, not another's (a backup
        // restored behind the same Redis). Retried by the cache projector if this fails.
        if let Err(error) = cache.adopt_history(events.as_ref()).await {
            tracing::warn!(%error, "cannot name the ledger's history for the cache yet");
        }
        let (stop, stopped) = watch::channel(false);
        let mut background = vec![
            cache_projector::start(events.clone(), read.clone(), cache.clone(), stopped.clone()),
            // What other instances write shows here soon, not when an L1 row ages out.
            cache_tail::start(events.clone(), cache.clone(), stopped.clone()),
        ];
        // Histogram samples are folded on a timer, not only when /metrics is scraped.
        let metrics = crate::prometheus::handle();
        background.push(crate::prometheus::start_upkeep(
            crate::prometheus::UPKEEP_INTERVAL,
            stopped.clone(),
            move || metrics.run_upkeep(),
        ));
        background.push(
            Reconciler {
                settlement: settlement.clone(),
                read: read.clone(),
            }
            .start(server.heleket.reconcile_interval, stopped.clone()),
        );
        let reactors = ReactorContext {
            events: events.clone(),
            read: read.clone(),
            storage: config.storage.clone(),
        };
        if let Some(fulfilment) = starledger_fulfilment::setup::fulfilment(
            &server.fragment,
            ledger.clone(),
            &config.currency,
            &config.pricing,
        )? {
            background.push(fulfilment.start(reactors.clone(), stopped.clone()));
        }

        let keys = ApiKeys::new(&server.api_keys);
        if keys.is_empty() {
            tracing::warn!("STARLEDGER_API_KEYS is empty: every /v1 request will be refused");
        }
        let queries = Arc::new(match &replica {
            Some(replica) => Queries::new(read.clone(), cache).with_replica(replica.read.clone()),
            None => Queries::new(read.clone(), cache),
        });
        let shop = Arc::new(Shop {
            ledger: ledger.clone(),
            queries: queries.clone(),
            projections: runner.progress(),
            provider: provider.clone(),
            currency: config.currency.clone(),
            pricing: config.pricing,
            invoices: InvoiceSettings {
                callback_url,
                lifetime_seconds: server.heleket.invoice_lifetime_seconds,
                network: server.heleket.network.clone(),
            },
            read_your_writes: server.read_your_writes,
        });
        let state = web::Data::new(AppState {
            shop,
            ledger,
            events: events.clone(),
            read: read.clone(),
            queries,
            audit: Arc::new(AuditSource::new(
                Copy {
                    events: events.clone(),
                    read: read.clone(),
                    name: "primary",
                },
                replica.map(|replica| Copy {
                    events: replica.events,
                    read: replica.read,
                    name: "standby",
                }),
            )),
            projections: runner.progress(),
            provider,
            settlement,
            sandbox,
            keys,
            limits: Limits {
                max_body_bytes: server.max_body_bytes,
                trust_proxy_headers: server.trust_proxy_headers,
                request_timeout: server.request_timeout,
            },
            heleket: HeleketSettings {
                api_key: server.heleket.mode.api_key().clone(),
                allowed_ips: server.heleket.allowed_ips.clone(),
            },
            metrics: crate::prometheus::handle(),
            rebuilds: RebuildJobs::default(),
            audit_jobs: Default::default(),
            ready_max_lag: READY_MAX_LAG,
            console: Arc::new(starledger_http::console::Sessions::new(server.console)),
            runtime: tokio::runtime::Handle::current(),
        });
        // The bot's own context, from the same shop, read store and request timeout.
        let bot_state = Arc::new(BotState {
            shop: state.shop.clone(),
            read: state.read.clone(),
            request_timeout: state.limits.request_timeout,
        });
        let bot = starledger_bot::start(
            &config.cache_settings(),
            server.telegram.as_ref(),
            bot_state,
            reactors,
            stopped.clone(),
        )
        .await;
        let bot = match bot {
            Ok(bot) => bot,
            Err(error) => {
                // What already runs stops in order, as at shutdown, before start-up gives up.
                let _ = stop.send(true);
                for task in background {
                    let _ = task.await;
                }
                runner.shutdown().await;
                return Err(StartError::Bot(error.to_string()));
            }
        };
        background.extend(bot.tasks);
        let telegram_inbox = bot
            .inbox
            .map(|inbox| web::Data::from(Arc::new(inbox) as Arc<dyn UpdateInbox>));
        let app_state = state.clone();
        let request_timeout = server.request_timeout;
        let http = HttpServer::new(move || {
            let app = App::new().app_data(app_state.clone());
            // Only in the bot's webhook mode; without it the route answers 404.
            let app = match &telegram_inbox {
                Some(inbox) => app.app_data(inbox.clone()),
                None => app,
            };
            app.app_data(starledger_http::query_config())
                .app_data(RequestTimeout(request_timeout))
                // Registered before `measure`, so `measure` wraps it and counts its 503s.
                .wrap(from_fn(starledger_http::deadline::enforce))
                .wrap(from_fn(starledger_http::measure))
                .configure(starledger_http::routes)
        })
        .workers(server.workers)
        .shutdown_timeout(server.shutdown_timeout.as_secs())
        .listen(listener)
        .map_err(|source| StartError::Bind {
            address: format!("{}:{port}", server.host),
            source,
        })?
        .run();
        tracing::info!(
            port,
            heleket = state.provider.name(),
            cache = state.queries.cache().mode(),
            "starledger is serving"
        );
        Ok(Self {
            port,
            server: http,
            stop,
            runner,
            background,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server from elsewhere (tests); SIGTERM and SIGINT do the same.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The shared state, for tests that look inside (the ledger, the read store).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until stopped, then drains and stops the background work.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        tracing::info!("HTTP server stopped; stopping background work");
        let _ = self.stop.send(true);
        for task in self.background {
            let _ = task.await;
        }
        self.runner.shutdown().await;
        tracing::info!("starledger stopped");
        served
    }
}

type Providers = (Arc<dyn PaymentProvider>, Option<Arc<Sandbox>>);

fn payment_provider(server: &ServerConfig, own_base: &str) -> Result<Providers, StartError> {
    match &server.heleket.mode {
        HeleketMode::Sandbox { api_key } => {
            tracing::warn!("HELEKET_MODE=sandbox: invoices are simulated, no money moves");
            let sandbox = Sandbox::new(api_key.clone(), own_base.to_owned())
                .map_err(|e| StartError::Provider(e.to_string()))?;
            Ok((sandbox.clone(), Some(sandbox)))
        }
        HeleketMode::Live {
            base_url,
            merchant_uuid,
            api_key,
        } => {
            let mut settings = ClientSettings::new(merchant_uuid.clone(), api_key.expose());
            settings.base_url = base_url.clone();
            settings.timeout = server.heleket.request_timeout;
            let client =
                HeleketClient::new(settings).map_err(|e| StartError::Provider(e.to_string()))?;
            Ok((Arc::new(client), None))
        }
    }
}
