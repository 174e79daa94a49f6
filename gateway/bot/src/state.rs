//! What the bot reads and commands through: the shop core, the read store and how long a reply
//! may take. Built by `serve` from the same `Arc`s and setting the HTTP API's state holds, so
//! the bot needs nothing of `http` and both front doors see one shop.

use std::sync::Arc;
use std::time::Duration;

use starledger_projections::store::ReadStore;

use starledger_shop::deadline::Deadline;
use starledger_shop::Shop;

/// The bot's view of the application: everything a handler or a notification reads.
pub struct BotState {
    /// The shop core the bot's commands go through; its ledger, cached reads, currency and
    /// read-your-writes wait are the bot's too (`shop.ledger`, `shop.queries`).
    pub shop: Arc<Shop>,
    /// The read models' store: a transaction's row (an order's stars and recipient).
    pub read: Arc<dyn ReadStore>,
    /// `REQUEST_TIMEOUT_MS`: the bot holds its replies and notifications to it, as the HTTP
    /// API holds its requests.
    pub request_timeout: Duration,
}

impl BotState {
    /// A deadline for a reply or a notification: `REQUEST_TIMEOUT_MS` from now.
    pub fn deadline(&self) -> Deadline {
        Deadline::after(self.request_timeout)
    }

    /// [`Shop::projected`]: whether the SQL projections show `position`, waited for within
    /// what `deadline` leaves.
    pub async fn projected(&self, position: u64, deadline: &Deadline) -> bool {
        self.shop.projected(position, deadline).await
    }
}
