//! Webhook mode, the bot's half: the dispatcher reads the updates the webhook route queued in
//! the [`WebhookInbox`](crate::inbox::WebhookInbox) from the other end of its channel, through
//! the listener built here. teloxide's own webhook server is axum's, so it is not used.

use std::convert::Infallible;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use teloxide::stop::{mk_stop_token, StopToken};
use teloxide::types::Update;
use teloxide::update_listeners::{StatefulListener, UpdateListener};
use tokio::sync::mpsc;

type UpdateStream = Pin<Box<dyn Stream<Item = Result<Update, Infallible>> + Send>>;

fn as_stream(state: &mut (UpdateStream, StopToken)) -> &mut UpdateStream {
    &mut state.0
}

fn stop_token(state: &mut (UpdateStream, StopToken)) -> StopToken {
    state.1.clone()
}

/// The dispatcher's listener: the inbox's updates until the dispatcher stops it.
pub fn listener(receiver: mpsc::Receiver<Update>) -> impl UpdateListener<Err = Infallible> {
    let (token, flag) = mk_stop_token();
    let updates = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|update| (Ok(update), receiver))
    })
    .take_until(flag);
    let stream: UpdateStream = Box::pin(updates);
    StatefulListener::new((stream, token), as_stream, stop_token)
}
