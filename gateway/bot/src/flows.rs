//! What the bot does with each message and button press: the commands, the dialogue steps
//! and the buy flow with its confirm button.
//!
//! Everything goes through the shop's commands (`starledger_shop`) and the read models
//! (`Queries`); the bot keeps nothing of its own but the dialogue session. Every ledger
//! command carries an idempotency key that Telegram's redelivery or a second press cannot
//! change:
//!
//! - a typed command: its message (`tg:{bot}:m:{chat}:{message id}:{date}:…`), the same when
//!   Telegram delivers the update again; not the update id, which Telegram starts again from
//!   a random number after a week without updates;
//! - a top-up preset button: the message it sits on and the amount, so pressing it twice
//!   returns the same invoice;
//! - the confirm button: the offer's token (a digest of the message or press that made the
//!   offer), so a repeated
//!   or concurrent confirm reserves once; a confirm whose offer is gone buys nothing and says
//!   what became of the order, if there is one (`orders.rs`).
//!
//! After a command the reply reads the read models at the command's position, so it shows
//! the command's effect (read-your-writes).

use std::sync::Arc;

use sha2::{Digest, Sha256};
use starledger_ledger::account::Rejection;
use starledger_ledger::commands::CommandError;
use starledger_ledger::ids::{IdempotencyKey, UserId, Username};
use starledger_ledger::money::Amount;
use teloxide::payloads::AnswerCallbackQuerySetters;
use teloxide::prelude::Requester;
use teloxide::types::{CallbackQuery, ChatId, InlineKeyboardMarkup, Message, MessageId, User};
use teloxide::RequestError;

use super::command::{self, Command};
use super::keyboards::{self, Action, HISTORY_PAGE};
use super::limits::{Limit, Verdict};
use super::orders::{buy_menu, cancel, confirm, offer};
use super::replies::{edit, send, ReplyBot};
use super::session::Awaiting;
use super::state::BotState;
use super::texts::{HistoryLine, Lang, Limited, Texts};
use super::BotContext;
use starledger_shop::{self as shop, ShopError};

pub type HandlerResult = Result<(), RequestError>;

/// What to show the user.
pub struct Answer {
    pub text: String,
    pub markup: Option<InlineKeyboardMarkup>,
}

impl Answer {
    pub(super) fn text(text: String) -> Self {
        Self { text, markup: None }
    }

    pub(super) fn with(text: String, markup: InlineKeyboardMarkup) -> Self {
        Self {
            text,
            markup: Some(markup),
        }
    }
}

/// The result of one step.
pub enum Outcome {
    Reply(Answer),
    /// A rate limit refused the step; `first` is the window's first refusal.
    Limited {
        limit: Limited,
        first: bool,
    },
}

impl From<Answer> for Outcome {
    fn from(answer: Answer) -> Self {
        Outcome::Reply(answer)
    }
}

/// One user's message or button press, with what every step needs.
pub(super) struct Turn<'a> {
    pub(super) context: &'a BotContext,
    pub(super) user: UserId,
    pub(super) from: &'a User,
    pub(super) texts: Texts,
    /// What this turn's ledger commands are keyed on: the message (`m:{chat}:{message
    /// id}:{date}`) or the button press (`cq:{callback query id}`). Not the update id:
    /// Telegram starts update ids again from a random number after a week without updates,
    /// so a key made of it alone could come back and replay an old command.
    pub(super) origin: String,
}

impl Turn<'_> {
    pub(super) fn state(&self) -> &BotState {
        &self.context.state
    }

    pub(super) fn currency(&self) -> &str {
        self.context.state.shop.currency.as_str()
    }

    /// A number that stands for this turn's origin (offer tokens in button data): the first
    /// eight bytes of its SHA-256.
    pub(super) fn origin_token(&self) -> u64 {
        let digest = Sha256::digest(self.origin.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }

    /// `tg:{bot id}:{rest}`: keys of different bots (a token changed) never meet.
    pub(super) fn key(&self, rest: &str) -> Option<IdempotencyKey> {
        IdempotencyKey::parse(&format!("tg:{}:{rest}", self.context.bot_id)).ok()
    }

    /// Counts the step against `limit`; `Err` carries the refusal to show.
    pub(super) async fn allow(&self, limit: Limit) -> Result<(), Outcome> {
        match self.context.limits.check(self.user.get(), limit).await {
            Verdict::Allowed => Ok(()),
            Verdict::Refused { first } => Err(Outcome::Limited {
                limit: match limit {
                    Limit::Messages => Limited::Messages,
                    Limit::Operations => Limited::Operations,
                    Limit::Payments => Limited::Payments,
                },
                first,
            }),
        }
    }

    /// Registers the user the first time they do anything that needs an account. A repeat
    /// (another update racing this one, another instance) is fine.
    pub(super) async fn ensure_registered(&self) -> Result<(), ShopError> {
        let known = self.state().shop.queries.user(self.user.get()).await?;
        if known.is_some() {
            return Ok(());
        }
        let Some(key) = self.key(&format!("{}:register", self.origin)) else {
            return Err(ShopError::UnknownUser);
        };
        match shop::register(
            &self.state().shop,
            self.user,
            self.from.username.clone(),
            self.language(),
            key,
            &self.state().deadline(),
        )
        .await
        {
            Ok(_)
            | Err(ShopError::Command(CommandError::Rejected(Rejection::AlreadyRegistered))) => {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// The language Telegram shows for the user. At most 16 characters are kept; Telegram's
    /// codes are shorter.
    fn language(&self) -> Option<String> {
        self.from
            .language_code
            .as_deref()
            .map(|code| code.chars().take(16).collect::<String>())
    }

    /// Records a username or language that differs from the account's profile, as this
    /// update shows them, so the users table and admins see the current profile. Orders do
    /// not depend on it (they record whom they deliver to when confirmed), so a failure here
    /// is logged and the turn goes on.
    pub(super) async fn sync_profile(&self) {
        let profile = match self.state().shop.ledger.profile(self.user).await {
            Ok(Some(profile)) => profile,
            // Not registered yet: registration records the profile.
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(user = %self.user, %error, "bot: cannot read the profile");
                return;
            }
        };
        let username = self.from.username.clone();
        let language = self.language();
        let same_language = language.is_none() || language == profile.language;
        if username == profile.username && same_language {
            return;
        }
        let Some(key) = self.key(&format!("{}:profile", self.origin)) else {
            return;
        };
        match shop::update_profile(&self.state().shop, self.user, username, language, key).await {
            Ok(true) => tracing::info!(user = %self.user, "bot: profile change recorded"),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(user = %self.user, %error, "bot: cannot record a profile change")
            }
        }
    }

    /// The user's available and reserved balance, at least as of `position`.
    pub(super) async fn balance(
        &self,
        position: Option<u64>,
    ) -> Result<(rust_decimal::Decimal, rust_decimal::Decimal), ShopError> {
        let row = self
            .state()
            .shop
            .queries
            .balance(self.user.get(), position)
            .await?;
        Ok(row.map_or(
            (rust_decimal::Decimal::ZERO, rust_decimal::Decimal::ZERO),
            |row| (row.available, row.reserved),
        ))
    }

    /// What the user sees when a step fails on our side or the ledger refuses it.
    pub(super) fn failure(&self, error: &ShopError) -> Answer {
        match error {
            ShopError::UnknownUser => Answer::text(self.texts.not_registered()),
            ShopError::Provider(_) => {
                tracing::warn!(user = %self.user, %error, "bot: payment provider call failed");
                Answer::text(self.texts.payments_unavailable())
            }
            ShopError::Command(CommandError::Rejected(Rejection::InsufficientFunds {
                available,
                required,
            })) => Answer::text(self.texts.insufficient_funds(
                *required,
                *available,
                self.currency(),
            )),
            ShopError::Command(CommandError::Rejected(Rejection::AccountInDebt { debt })) => {
                Answer::text(self.texts.in_debt(*debt, self.currency()))
            }
            _ => {
                tracing::error!(user = %self.user, %error, "bot: a step failed");
                Answer::text(self.texts.unavailable())
            }
        }
    }
}

fn user_id(user: &User) -> Option<UserId> {
    i64::try_from(user.id.0)
        .ok()
        .and_then(|id| UserId::new(id).ok())
}

/// A message from a user.
pub async fn on_message(
    bot: ReplyBot,
    message: Message,
    context: Arc<BotContext>,
) -> HandlerResult {
    // The shop is a private conversation; groups and channels are not served.
    if !message.chat.is_private() {
        return Ok(());
    }
    let Some(from) = message.from.as_ref().filter(|user| !user.is_bot) else {
        return Ok(());
    };
    let Some(user) = user_id(from) else {
        return Ok(());
    };
    let turn = Turn {
        context: &context,
        user,
        from,
        texts: Texts(Lang::from_code(from.language_code.as_deref())),
        origin: format!(
            "m:{}:{}:{}",
            message.chat.id.0,
            message.id.0,
            message.date.timestamp()
        ),
    };
    let allowed = turn.allow(Limit::Messages).await;
    if allowed.is_ok() {
        turn.sync_profile().await;
    }
    let outcome = match allowed {
        Err(refused) => refused,
        Ok(()) => match message.text() {
            None => Answer::text(turn.texts.unknown()).into(),
            Some(text) => match command::parse(text, &context.bot_username) {
                Some(command) => run_command(&turn, command).await,
                None => reply_to_dialogue(&turn, text).await,
            },
        },
    };
    let answer = match outcome {
        Outcome::Reply(answer) => answer,
        Outcome::Limited { limit, first: true } => Answer::text(turn.texts.rate_limited(limit)),
        Outcome::Limited { first: false, .. } => return Ok(()),
    };
    send(&bot, message.chat.id, answer).await
}

async fn run_command(turn: &Turn<'_>, command: Command) -> Outcome {
    // A command ends whatever dialogue step was open.
    let mut session = turn.context.sessions.get(turn.user.get()).await;
    if session.awaiting.take().is_some() {
        turn.context.sessions.put(turn.user.get(), &session).await;
    }
    match command {
        Command::Start => start(turn).await,
        Command::Help => Answer::with(
            turn.texts.help(turn.currency()),
            keyboards::main_menu(turn.texts),
        )
        .into(),
        Command::Balance => balance(turn).await,
        Command::History => history(turn, None).await,
        Command::Recharge(None) => recharge_menu(turn),
        Command::Recharge(Some(Err(_))) => Answer::text(turn.texts.invalid_amount()).into(),
        Command::Recharge(Some(Ok(amount))) => {
            let key = turn.key(&format!("{}:recharge", turn.origin));
            recharge(turn, amount, key).await
        }
        Command::BuyStars {
            recipient: Some(Err(_)),
            ..
        } => Answer::text(turn.texts.invalid_recipient()).into(),
        Command::BuyStars {
            stars: Some(Err(_)),
            ..
        } => Answer::text(turn.texts.invalid_stars()).into(),
        Command::BuyStars {
            stars: None,
            recipient,
        } => buy_menu(turn, recipient.and_then(Result::ok)),
        Command::BuyStars {
            stars: Some(Ok(stars)),
            recipient,
        } => offer(turn, stars, recipient.and_then(Result::ok)).await,
        Command::Unknown => Answer::text(turn.texts.unknown()).into(),
    }
}

/// Plain text: the answer to the question the bot asked last, if any.
async fn reply_to_dialogue(turn: &Turn<'_>, text: &str) -> Outcome {
    let mut session = turn.context.sessions.get(turn.user.get()).await;
    let Some(awaiting) = session.awaiting.clone() else {
        return Answer::text(turn.texts.unknown()).into();
    };
    match awaiting {
        Awaiting::RechargeAmount => {
            let Ok(amount) = command::amount(text) else {
                return Answer::text(turn.texts.invalid_amount()).into();
            };
            session.awaiting = None;
            turn.context.sessions.put(turn.user.get(), &session).await;
            let key = turn.key(&format!("{}:recharge", turn.origin));
            recharge(turn, amount, key).await
        }
        Awaiting::Stars { recipient } => {
            let Ok(stars) = command::stars_count(text) else {
                return Answer::text(turn.texts.invalid_stars()).into();
            };
            session.awaiting = None;
            turn.context.sessions.put(turn.user.get(), &session).await;
            offer(turn, stars, recipient).await
        }
        Awaiting::Recipient => {
            let Ok(recipient) = Username::parse(text.trim()) else {
                return Answer::text(turn.texts.invalid_recipient()).into();
            };
            session.awaiting = None;
            turn.context.sessions.put(turn.user.get(), &session).await;
            buy_menu(turn, Some(recipient))
        }
    }
}

async fn start(turn: &Turn<'_>) -> Outcome {
    if let Err(refused) = turn.allow(Limit::Operations).await {
        return refused;
    }
    if let Err(error) = turn.ensure_registered().await {
        return turn.failure(&error).into();
    }
    Answer::with(
        turn.texts.welcome(&turn.from.first_name),
        keyboards::main_menu(turn.texts),
    )
    .into()
}

async fn balance(turn: &Turn<'_>) -> Outcome {
    if let Err(refused) = turn.allow(Limit::Operations).await {
        return refused;
    }
    if let Err(error) = turn.ensure_registered().await {
        return turn.failure(&error).into();
    }
    match turn.balance(None).await {
        Ok((available, reserved)) => {
            Answer::text(turn.texts.balance(available, reserved, turn.currency())).into()
        }
        Err(error) => turn.failure(&error).into(),
    }
}

async fn history(turn: &Turn<'_>, before: Option<u64>) -> Outcome {
    if let Err(refused) = turn.allow(Limit::Operations).await {
        return refused;
    }
    if let Err(error) = turn.ensure_registered().await {
        return turn.failure(&error).into();
    }
    let page = match turn
        .state()
        .shop
        .queries
        .history(turn.user.get(), before, HISTORY_PAGE, None)
        .await
    {
        Ok(page) => page,
        Err(error) => return turn.failure(&ShopError::Read(error)).into(),
    };
    if page.transactions.is_empty() {
        return Answer::text(turn.texts.history_empty()).into();
    }
    let mut text = turn.texts.history_title();
    for row in &page.transactions {
        text.push('\n');
        text.push_str(
            &turn.texts.history_line(&HistoryLine {
                kind: row.kind.as_str(),
                status: &row.status,
                amount: row.amount,
                currency: &row.currency,
                stars: row
                    .metadata
                    .get("stars")
                    .and_then(serde_json::Value::as_u64),
                recipient: row
                    .metadata
                    .get("recipient")
                    .and_then(serde_json::Value::as_str),
                date: row.created_at.format("%Y-%m-%d %H:%M").to_string(),
            }),
        );
    }
    Answer::with(
        text,
        keyboards::history(turn.texts, before.is_none(), page.next_cursor),
    )
    .into()
}

fn recharge_menu(turn: &Turn<'_>) -> Outcome {
    Answer::with(
        turn.texts.recharge_prompt(turn.currency()),
        keyboards::recharge_menu(turn.texts, turn.currency()),
    )
    .into()
}

async fn recharge(turn: &Turn<'_>, amount: Amount, key: Option<IdempotencyKey>) -> Outcome {
    for limit in [Limit::Operations, Limit::Payments] {
        if let Err(refused) = turn.allow(limit).await {
            return refused;
        }
    }
    let Some(key) = key else {
        return Answer::text(turn.texts.unavailable()).into();
    };
    if let Err(error) = turn.ensure_registered().await {
        return turn.failure(&error).into();
    }
    match shop::recharge(
        &turn.state().shop,
        turn.user,
        amount,
        key,
        &turn.state().deadline(),
    )
    .await
    {
        Ok(recharge) => {
            let event = recharge.event;
            let text = turn.texts.invoice(
                event.amount.value(),
                event.currency.as_str(),
                &event.invoice.url,
                &event
                    .invoice
                    .expires_at
                    .format("%Y-%m-%d %H:%M")
                    .to_string(),
            );
            match keyboards::pay(turn.texts, &event.invoice.url) {
                Some(markup) => Answer::with(text, markup),
                None => Answer::text(text),
            }
            .into()
        }
        Err(error) => turn.failure(&error).into(),
    }
}

async fn ask(turn: &Turn<'_>, awaiting: Awaiting, question: String) -> Outcome {
    let mut session = turn.context.sessions.get(turn.user.get()).await;
    session.awaiting = Some(awaiting);
    turn.context.sessions.put(turn.user.get(), &session).await;
    Answer::text(question).into()
}

/// A button press.
pub async fn on_callback(
    bot: ReplyBot,
    query: CallbackQuery,
    context: Arc<BotContext>,
) -> HandlerResult {
    let Some(user) = user_id(&query.from) else {
        return Ok(());
    };
    let turn = Turn {
        context: &context,
        user,
        from: &query.from,
        texts: Texts(Lang::from_code(query.from.language_code.as_deref())),
        origin: format!("cq:{}", query.id),
    };
    // The message the button sits on: where answers go, and what a top-up preset's key
    // is made of.
    let place: Option<(ChatId, MessageId)> = query
        .message
        .as_ref()
        .map(|message| (message.chat().id, message.id()));
    let action = query.data.as_deref().and_then(Action::parse);
    if let Err(refused) = turn.allow(Limit::Messages).await {
        // A refused press: the spinner on the button stops with the polite text in an alert.
        let mut answer = bot.answer_callback_query(query.id.clone());
        if let Outcome::Limited { limit, .. } = refused {
            answer = answer.text(turn.texts.rate_limited(limit)).show_alert(true);
        }
        answered(answer.await);
        return Ok(());
    }
    // Answered before any slow work: a top-up may wait out Heleket's retries, and Telegram
    // refuses an answer that comes too late. Whether or not the answer got through, the
    // reply below is sent.
    answered(bot.answer_callback_query(query.id.clone()).await);
    turn.sync_profile().await;
    // Not ours, or a button without a message we can answer in: nothing more to do.
    let (Some(action), Some((chat, message))) = (action, place) else {
        return Ok(());
    };
    let edits = matches!(
        action,
        Action::History(_) | Action::Confirm(_) | Action::Cancel(_)
    );
    match press(&turn, action, chat, message).await {
        Outcome::Reply(answer) if edits => edit(&bot, chat, message, answer).await,
        Outcome::Reply(answer) => send(&bot, chat, answer).await,
        // Another limit refused the step; the press is answered already, so the polite text
        // comes as a message, once per window.
        Outcome::Limited { limit, first: true } => {
            send(&bot, chat, Answer::text(turn.texts.rate_limited(limit))).await
        }
        Outcome::Limited { first: false, .. } => Ok(()),
    }
}

/// Logs a callback answer Telegram did not take (too late, or a network error) and goes on:
/// the answer only stops a button's spinner, and the reply that follows must still be sent.
fn answered<T>(result: Result<T, RequestError>) {
    if let Err(error) = result {
        // Only the kind of failure: a network error's text would quote the token's URL.
        tracing::warn!(failure = ?super::delivery::classify(&error), "bot: a button press could not be answered; replying anyway");
    }
}

async fn press(turn: &Turn<'_>, action: Action, chat: ChatId, message: MessageId) -> Outcome {
    match action {
        Action::Balance => balance(turn).await,
        Action::History(before) => history(turn, before).await,
        Action::Help => Answer::with(
            turn.texts.help(turn.currency()),
            keyboards::main_menu(turn.texts),
        )
        .into(),
        Action::RechargeMenu => recharge_menu(turn),
        Action::Recharge(amount) => {
            // The same preset on the same message is the same top-up: one invoice however
            // often it is pressed.
            let key = turn.key(&format!("msg:{}:{}:recharge:{amount}", chat.0, message.0));
            recharge(turn, amount, key).await
        }
        Action::RechargeOther => {
            ask(
                turn,
                Awaiting::RechargeAmount,
                turn.texts.ask_amount(turn.currency()),
            )
            .await
        }
        Action::BuyMenu(recipient) => buy_menu(turn, recipient),
        Action::Stars(stars, recipient) => offer(turn, stars, recipient).await,
        Action::StarsOther(recipient) => {
            ask(turn, Awaiting::Stars { recipient }, turn.texts.ask_stars()).await
        }
        Action::Gift => ask(turn, Awaiting::Recipient, turn.texts.ask_recipient()).await,
        Action::Confirm(token) => confirm(turn, token).await,
        Action::Cancel(token) => cancel(turn, token).await,
    }
}
