//! The calls behind [`StarsMarket`](crate::market::StarsMarket), each its own
//! whole life: find the recipient, open an order (re-syncing the price when Fragment says it
//! changed), get the transfer that pays it, ask how it went, and report the payment.

use chrono::Utc;
use serde_json::Value;
use starledger_ledger::events::Stars;
use starledger_ledger::ids::Username;
use tracing::{debug, warn};

use super::{Call, FragmentClient, MAX_REMEMBERED_ORDERS, PRICE_TRIES, PROVIDER};
use crate::market::{MarketError, MarketOrder, OrderState, PaymentRequest, Recipient};
use crate::ton::WalletAccount;
use crate::wire::{
    account_json, device_json, id_text, read_buy_state, read_confirmation, read_order,
    read_payment, state_nonce, Answer, Failure, MAX_MESSAGE_CHARS,
};
use starledger_outbound::shorten;

impl FragmentClient {
    /// `searchStarsRecipient(query, quantity)` → `{"ok":true,"found":{"recipient","name",…}}`
    /// or `{"error":"No Telegram users found."}`.
    pub(super) async fn search(
        &self,
        username: &Username,
        stars: Stars,
    ) -> Result<Recipient, Failure> {
        let answer = self
            .call(
                Call::FindRecipient,
                "searchStarsRecipient",
                &[
                    ("query", username.as_str().to_owned()),
                    ("quantity", stars.get().to_string()),
                ],
            )
            .await?;
        let found = answer.get("found").filter(|found| found.is_object());
        let recipient_id = found
            .and_then(|found| found.get("recipient"))
            .and_then(id_text)
            .ok_or_else(|| {
                Failure::Market(MarketError::RecipientNotFound(format!(
                    "Fragment found no recipient for {username}"
                )))
            })?;
        let name = found
            .and_then(|found| found.get("name"))
            .and_then(Value::as_str)
            .filter(|name| !name.trim().is_empty())
            .map(|name| shorten(name, MAX_MESSAGE_CHARS));
        Ok(Recipient {
            username: username.clone(),
            recipient_id,
            name,
        })
    }

    /// `updateStarsBuyState(mode=new, lv=false, dh)` to sync the session's TON price as the
    /// buy page does, then `initBuyStarsRequest(recipient, quantity, payment_method=ton)` →
    /// `{"req_id":"…","amount":"0.2345"}`. Without the sync Fragment tends to answer `Price was
    /// changed` (and without `payment_method`, `Access denied`); a price change is re-synced
    /// and tried again a few times.
    pub(super) async fn open(
        &self,
        recipient: &Recipient,
        stars: Stars,
    ) -> Result<MarketOrder, Failure> {
        let mut last_change = String::new();
        for _ in 0..PRICE_TRIES {
            let sync = self
                .call(
                    Call::OpenOrder,
                    "updateStarsBuyState",
                    &[
                        ("mode", "new".to_owned()),
                        ("lv", "false".to_owned()),
                        ("dh", state_nonce()),
                    ],
                )
                .await;
            match sync {
                // Only the page's refresh of itself: if Fragment has something against it
                // but is up and the session good, the order itself will say what is wrong.
                Ok(_) | Err(Failure::UnknownMethod(_)) => {}
                Err(Failure::Market(error)) if error.is_definite() => {
                    debug!(provider = PROVIDER, %error, "Fragment refused the buy state update");
                }
                Err(other) => return Err(other),
            }
            let answer = self
                .call(
                    Call::OpenOrder,
                    "initBuyStarsRequest",
                    &[
                        ("recipient", recipient.recipient_id.clone()),
                        ("quantity", stars.get().to_string()),
                        ("payment_method", "ton".to_owned()),
                    ],
                )
                .await;
            match answer {
                Err(Failure::Market(MarketError::PriceChanged(why))) => last_change = why,
                Err(other) => return Err(other),
                Ok(answer) => return read_order(&answer.body).map_err(Failure::Market),
            }
        }
        Err(Failure::Market(MarketError::PriceChanged(format!(
            "{last_change} ({PRICE_TRIES} tries)"
        ))))
    }

    /// `getBuyStarsLink(transaction=1, id, show_sender=0, account, device)` →
    /// `{"ok":true,"transaction":{"validUntil":…,"messages":[{"address","amount","payload"}]},
    /// "confirm_method":"confirmReq","confirm_params":{"id":…}}`, or `{"need_verify":true}`
    /// when the account must pass KYC first. The confirmation it names is kept for
    /// [`Self::confirm`].
    pub(super) async fn link(
        &self,
        request_id: &str,
        wallet: &WalletAccount,
    ) -> Result<PaymentRequest, Failure> {
        let answer = self.fetch_link(request_id, wallet).await?;
        read_payment(&answer.json, Utc::now()).map_err(Failure::Market)
    }

    async fn fetch_link(
        &self,
        request_id: &str,
        wallet: &WalletAccount,
    ) -> Result<Answer, Failure> {
        let answer = self
            .call(
                Call::PaymentRequest,
                "getBuyStarsLink",
                &[
                    ("transaction", "1".to_owned()),
                    ("id", request_id.to_owned()),
                    ("show_sender", "0".to_owned()),
                    ("account", account_json(wallet)),
                    ("device", device_json()),
                ],
            )
            .await?;
        let confirmation = read_confirmation(&answer.json, request_id).map_err(Failure::Market)?;
        let mut orders = self.orders.lock().await;
        if orders.len() >= MAX_REMEMBERED_ORDERS {
            // Only a shortcut: a forgotten confirmation is asked for again, a forgotten
            // state starts from `new`.
            orders.clear();
        }
        orders
            .entry(request_id.to_owned())
            .or_default()
            .confirmation = Some(confirmation);
        Ok(answer)
    }

    /// `updateStarsBuyState(mode, lv=false, dh)`, as the buy page polls it and the public
    /// clients learn completion from it: the answer's `mode` is sent back on the next poll,
    /// and `mode: "done"` with `need_update: false` means delivered. An answer without a mode
    /// (or a Fragment that no longer knows the method) is [`OrderState::Unknown`], and the
    /// worker goes by the blockchain. A refusal is also `Unknown`, never an error the worker
    /// would refund on: by the time state is asked the order is paid.
    pub(super) async fn state(&self, request_id: &str) -> Result<OrderState, Failure> {
        let mode = self
            .orders
            .lock()
            .await
            .get(request_id)
            .and_then(|order| order.mode.clone())
            .unwrap_or_else(|| "new".to_owned());
        let answer = self
            .call(
                Call::OrderState,
                "updateStarsBuyState",
                &[
                    ("mode", mode),
                    ("lv", "false".to_owned()),
                    ("dh", state_nonce()),
                ],
            )
            .await;
        match answer {
            Ok(answer) => Ok(match read_buy_state(&answer.json) {
                Some((_, true)) => {
                    self.orders.lock().await.remove(request_id);
                    OrderState::Delivered
                }
                Some((mode, false)) => {
                    self.orders
                        .lock()
                        .await
                        .entry(request_id.to_owned())
                        .or_default()
                        .mode = Some(mode);
                    OrderState::Pending
                }
                None => OrderState::Unknown,
            }),
            Err(Failure::UnknownMethod(why)) => {
                warn!(provider = PROVIDER, problem = %why, "Fragment cannot say how an order went");
                Ok(OrderState::Unknown)
            }
            Err(Failure::Market(error)) if error.is_definite() => {
                warn!(provider = PROVIDER, %error, "Fragment refused to say how an order went");
                Ok(OrderState::Unknown)
            }
            Err(other) => Err(other),
        }
    }

    /// Reports the broadcast payment the way `getBuyStarsLink` asked (`confirm_method` with
    /// `confirm_params`, plus `boc`, `account` and `device`) → `{"ok":true}`. After a restart
    /// the link is asked for again to learn the confirmation: it pays nothing.
    pub(super) async fn confirm(
        &self,
        request_id: &str,
        wallet: &WalletAccount,
        boc: &str,
    ) -> Result<(), Failure> {
        let known = self
            .orders
            .lock()
            .await
            .get(request_id)
            .and_then(|order| order.confirmation.clone());
        let confirmation = match known {
            Some(confirmation) => confirmation,
            None => {
                let answer = self.fetch_link(request_id, wallet).await?;
                read_confirmation(&answer.json, request_id).map_err(Failure::Market)?
            }
        };
        let mut params: Vec<(&str, String)> = confirmation
            .params
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        params.push(("boc", boc.to_owned()));
        params.push(("account", account_json(wallet)));
        params.push(("device", device_json()));
        let answer = self
            .call(Call::ConfirmPayment, &confirmation.method, &params)
            .await?;
        match answer.get("ok").and_then(Value::as_bool) {
            Some(true) => Ok(()),
            _ => Err(Failure::Market(MarketError::BadResponse(
                "the payment confirmation was not acknowledged".into(),
            ))),
        }
    }
}
