//! The three calls behind [`TonChain`](crate::ton::TonChain): the wallet's state
//! (asking the contract for its seqno when toncenter does not know the wallet), broadcasting a
//! signed transfer, and paging back through the wallet's transactions for the one that
//! executed a message.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tracing::{info, warn};

use super::answers::{
    hash_hex, read_seqno, read_wallet_information, Known, Transaction, TransactionId,
};
use super::{Answer, Call, Request, Toncenter, PROVIDER};
use crate::ton::{ChainError, ChainTransaction, SignedTransfer, WalletState};

impl Toncenter {
    pub(super) async fn state(&self, address: &str) -> Result<WalletState, ChainError> {
        let request = Request::Get(
            "getWalletInformation",
            vec![("address", address.to_owned())],
        );
        let info = self.read(Call::WalletState, address, &request).await?;
        match read_wallet_information(&info)? {
            Known::State(state) => Ok(state),
            Known::ActiveWithoutSeqno(balance) => {
                // A wallet contract this toncenter does not recognise: ask the contract.
                let body = json!({"address": address, "method": "seqno", "stack": []});
                let request = Request::Post("runGetMethod", &body);
                let result = self.read(Call::WalletState, address, &request).await?;
                Ok(WalletState {
                    balance,
                    seqno: read_seqno(&result)?,
                    deployed: true,
                })
            }
        }
    }

    pub(super) async fn send_boc(&self, transfer: &SignedTransfer) -> Result<(), ChainError> {
        let body = json!({ "boc": transfer.message });
        let request = Request::Post("sendBocReturnHash", &body);
        match self
            .send(Call::Broadcast, &transfer.message_hash, &request)
            .await?
        {
            Answer::SeqnoAlreadyUsed(why) => {
                info!(
                    provider = PROVIDER,
                    message_hash = %transfer.message_hash,
                    seqno = transfer.seqno,
                    why = %why,
                    "the wallet's seqno has moved past this message: it executed already, \
                     or another message used the seqno"
                );
                Ok(())
            }
            Answer::Result(result) => {
                let reported = result
                    .get("hash_norm")
                    .and_then(Value::as_str)
                    .and_then(hash_hex);
                if let Some(reported) = reported.filter(|h| *h != transfer.message_hash) {
                    // Accepted all the same; but lookups by our hash would never find it.
                    warn!(
                        provider = PROVIDER,
                        ours = %transfer.message_hash,
                        toncenter = %reported,
                        "toncenter's normalised hash of the broadcast differs from ours"
                    );
                }
                Ok(())
            }
        }
    }

    pub(super) async fn find(
        &self,
        address: &str,
        message_hash: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<ChainTransaction>, ChainError> {
        let target = hash_hex(message_hash)
            .ok_or_else(|| ChainError::Refused(format!("{message_hash:?} is not a hash")))?;
        let since = since.timestamp();
        let mut cursor: Option<TransactionId> = None;
        for _ in 0..self.max_pages {
            let mut query = vec![
                ("address", address.to_owned()),
                ("limit", self.page_size.to_string()),
            ];
            if let Some(cursor) = &cursor {
                // The page starts with the cursor's transaction itself, skipped below.
                query.push(("lt", cursor.lt.to_string()));
                query.push(("hash", cursor.hash.clone()));
            }
            let request = Request::Get("getTransactions", query);
            let page = self.read(Call::FindTransaction, address, &request).await?;
            let page = page.as_array().ok_or_else(|| {
                ChainError::BadResponse("getTransactions did not answer a list".into())
            })?;
            let mut last = None;
            for raw in page {
                let transaction = Transaction::read(raw)?;
                if cursor.as_ref() == Some(&transaction.id) {
                    continue;
                }
                if let Some(found) = transaction.executed(&target)? {
                    return Ok(Some(found));
                }
                // Newest first: everything after this one is older still.
                if transaction.utime < since {
                    return Ok(None);
                }
                last = Some(transaction.id);
            }
            match last {
                // A short page is the start of the wallet's history.
                Some(last) if page.len() >= self.page_size as usize => cursor = Some(last),
                _ => return Ok(None),
            }
        }
        Err(ChainError::Unavailable(format!(
            "read {} pages of transactions without reaching {}",
            self.max_pages,
            DateTime::from_timestamp(since, 0)
                .map_or_else(|| since.to_string(), |t| t.to_rfc3339())
        )))
    }
}
