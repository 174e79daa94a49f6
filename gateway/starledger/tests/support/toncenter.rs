//! toncenter API v2 as the tests see it: the JSON shapes of its answers, and [`FakeChain`], a
//! stateful toncenter over a one-wallet chain that executes what the shop wallet signs.
//!
//! The chain checks a broadcast external message the way a v4r2 wallet contract does — in the
//! contract's order: expiry (exit code 36), seqno (33), wallet id (34), signature (35), and at
//! seqno 0 a state init that hashes to the address — and when it passes, increments the
//! seqno, debits the balance (send mode 3: fees on top; a transfer the balance cannot cover is
//! dropped and the seqno still consumed) and records a transaction with the message as
//! `in_msg` and the transfers as `out_msgs`, as `getTransactions` shows them. Messages are
//! read with tonlib-core and hashed here, not with the code under test.
//!
//! Switches put faults exactly where a test wants them: broadcasts lost on the way (nothing
//! executes), answers lost after executing, transaction lookups failing, an indexer behind
//! (the wallet's seqno has moved, its new transactions are not listed yet), and a wallet
//! toncenter does not recognise (so its seqno comes from `runGetMethod`).

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use ring::signature::{UnparsedPublicKey, ED25519};
use serde_json::{json, Value};
use starledger_fulfilment::ton::Nanotons;
use starledger_fulfilment::wallet::ShopWallet;
use starledger_outbound::resilience::WallClock;
use tonlib_core::cell::{ArcCell, BagOfCells, Cell, CellBuilder, TonCellError};
use tonlib_core::tlb_types::block::message::{CommonMsgInfo, Message};
use tonlib_core::tlb_types::tlb::TLB;
use tonlib_core::{TonAddress, TonHash};
use wiremock::{Request, Respond, ResponseTemplate};

use super::wall_clock::ManualWallClock;

/// A public test phrase (tonlib-rs's test suite), never a real wallet's.
pub const TEST_PHRASE: &str = "fancy carpet hello mandate penalty trial consider property top \
    vicious exit rebuild tragic profit urban major total month holiday sudden rib gather media \
    vicious";

/// The address Fragment has wallets pay for Stars.
pub const FRAGMENT_ADDRESS: &str = "EQBAjaOyi2wGWlk-EDkSabqqnF-MrrwMadnwqrurKpkla9nE";

/// The standard wallet id of v4r2 wallets on workchain 0.
const WALLET_ID_V4: u32 = 698_983_191;

/// What the fake chain charges for executing a message, on top of what it sends.
pub const FEE: u64 = 2_865_627;

/// The send mode the shop wallet uses (fees paid separately, errors ignored); the only one
/// the fake models.
const SEND_MODE: u8 = 3;

// ---- answers in toncenter's shapes ---------------------------------------------------------

pub fn ok(result: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": result}))
}

pub fn error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"ok": false, "error": message, "code": status}))
}

/// What toncenter relays when the wallet contract throws on a broadcast message.
pub fn not_accepted(exit_code: i32) -> ResponseTemplate {
    error(
        500,
        &format!(
            "LITE_SERVER_UNKNOWN: cannot apply external message to current state : External \
             message was not accepted\nCannot run message on account: inbound external message \
             rejected by transaction 4C6FE61A4B7925532DEE47DEED8367FB9E918D4B32A9B9EC270BEF9D9C65CA13:\
             \nexitcode={exit_code}, steps=49, gas_used=0\n"
        ),
    )
}

/// What toncenter relays when the account cannot run the message at all (not deployed and
/// no state init, or not this account's message).
fn rejected_before_execution() -> ResponseTemplate {
    error(
        500,
        "LITE_SERVER_UNKNOWN: cannot apply external message to current state : External message \
         was not accepted: cannot run message on account: inbound external message rejected by \
         account before smart-contract execution",
    )
}

/// A proxy's timeout page in front of toncenter: what a lost request or answer looks like.
fn gateway_timeout() -> ResponseTemplate {
    ResponseTemplate::new(504).set_body_raw(
        "<html><head><title>504 Gateway Time-out</title></head><body><center><h1>504 Gateway \
         Time-out</h1></center><hr><center>nginx</center></body></html>",
        "text/html",
    )
}

// ---- cells ---------------------------------------------------------------------------------

pub fn boc(cell: &ArcCell) -> String {
    STANDARD.encode(
        BagOfCells::new(std::slice::from_ref(cell))
            .serialize(true)
            .expect("a cell serialises"),
    )
}

pub fn root(message: &str) -> ArcCell {
    BagOfCells::parse_base64(message)
        .and_then(|boc| boc.single_root())
        .expect("a bag of one cell")
}

pub fn hash_b64(cell: &Cell) -> String {
    STANDARD.encode(cell.cell_hash().as_slice())
}

/// A text comment as a message body: op 0, then the text.
pub fn comment_cell(text: &str) -> ArcCell {
    let mut cell = CellBuilder::new();
    cell.store_u32(32, 0)
        .and_then(|c| c.store_string(text))
        .expect("a short comment fits one cell");
    cell.build().expect("a comment cell").to_arc()
}

/// [`comment_cell`] as a base64 bag of cells, the form payloads travel in.
pub fn comment(text: &str) -> String {
    boc(&comment_cell(text))
}

/// An external message as broadcast, taken apart.
pub struct External {
    pub root: ArcCell,
    pub destination: TonAddress,
    pub state_init: Option<ArcCell>,
    pub body: ArcCell,
}

/// Reads a base64 external message (`ext_in_msg_info$10`), body and state init inline or by
/// reference.
pub fn read_external(message: &str) -> Result<External, String> {
    let root = BagOfCells::parse_base64(message)
        .and_then(|boc| boc.single_root())
        .map_err(|e| e.to_string())?;
    let parsed = Message::from_cell(&root).map_err(|e| e.to_string())?;
    let CommonMsgInfo::ExtIn(info) = parsed.info else {
        return Err("not an inbound external message".into());
    };
    let destination = TonAddress::try_from(info.dest).map_err(|e| e.to_string())?;
    let state_init = parsed
        .init
        .map(|init| init.value.to_cell().map(Cell::to_arc))
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok(External {
        root,
        destination,
        state_init,
        body: parsed.body.value,
    })
}

/// The TEP-467 normalised hash of an external message: the same message with no source, no
/// import fee, no state init and the body by reference. Built here bit by bit, independently
/// of the wallet code under test.
fn normalized_hash(external: &External) -> Result<TonHash, TonCellError> {
    let mut cell = CellBuilder::new();
    cell.store_u8(2, 0b10)? // ext_in_msg_info$10
        .store_u8(2, 0)? // src: addr_none
        .store_u8(2, 0b10)? // dest: addr_std$10
        .store_bit(false)? // no anycast
        .store_i8(8, external.destination.workchain as i8)?
        .store_slice(external.destination.hash_part.as_slice())?
        .store_u8(4, 0)? // import_fee: 0
        .store_bit(false)? // no state init
        .store_bit(true)? // body by reference
        .store_reference(&external.body)?;
    Ok(cell.build()?.cell_hash())
}

/// One transfer a wallet message makes, read from its internal message.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub destination: TonAddress,
    pub bounce: bool,
    pub amount: u64,
    pub body: ArcCell,
}

fn read_internal(cell: &ArcCell) -> Result<Outgoing, String> {
    let message = Message::from_cell(cell).map_err(|e| e.to_string())?;
    let CommonMsgInfo::Int(info) = message.info else {
        return Err("not an internal message".into());
    };
    let destination = TonAddress::from_msg_address(info.dest).map_err(|e| e.to_string())?;
    let amount = info
        .value
        .grams
        .amount
        .to_string()
        .parse()
        .map_err(|_| "an amount beyond u64".to_owned())?;
    Ok(Outgoing {
        destination,
        bounce: info.bounce,
        amount,
        body: message.body.value,
    })
}

/// The incoming external message of the transaction that executes `external`, as toncenter
/// shows it.
fn in_msg_json(external: &External, friendly_wallet: &str) -> Value {
    json!({
        "@type": "ext.message",
        "hash": hash_b64(&external.root),
        "source": "",
        "destination": friendly_wallet,
        "value": "0",
        "extra_currencies": [],
        "fwd_fee": "0",
        "ihr_fee": "0",
        "created_lt": "0",
        "body_hash": hash_b64(&external.body),
        "msg_data": {
            "@type": "msg.dataRaw",
            "body": boc(&external.body),
            "init_state": external.state_init.as_ref().map(boc).unwrap_or_default()
        },
        "message": ""
    })
}

/// How toncenter shows the comment of an outgoing transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentView {
    /// As raw cells (`msg.dataRaw`).
    Raw,
    /// As its text (`msg.dataText`, base64 of the text), as toncenter does for comments.
    Text,
    /// As a text that is not the one sent: an API that misreports what went out.
    Altered,
}

/// The text of a comment cell (op 0 then the text, in one cell), if it is one.
fn comment_of(body: &ArcCell) -> Option<String> {
    let mut parser = body.parser();
    if parser.remaining_bits() < 32 || parser.load_u32(32).ok()? != 0 {
        return None;
    }
    let bytes = parser.remaining_bits() / 8;
    String::from_utf8(parser.load_bytes(bytes).ok()?).ok()
}

/// An outgoing transfer of a transaction, as toncenter shows it.
fn out_msg_json(out: &Outgoing, friendly_wallet: &str, created_lt: u64) -> Value {
    out_msg_json_as(out, friendly_wallet, created_lt, CommentView::Raw)
}

fn out_msg_json_as(
    out: &Outgoing,
    friendly_wallet: &str,
    created_lt: u64,
    view: CommentView,
) -> Value {
    let msg_data = match (view, comment_of(&out.body)) {
        (CommentView::Text, Some(text)) => {
            json!({"@type": "msg.dataText", "text": STANDARD.encode(text.as_bytes())})
        }
        (CommentView::Altered, Some(text)) => {
            json!({"@type": "msg.dataText", "text": STANDARD.encode(format!("{text} (another order)").as_bytes())})
        }
        _ => json!({"@type": "msg.dataRaw", "body": boc(&out.body), "init_state": ""}),
    };
    json!({
        "@type": "ext.message",
        "hash": STANDARD.encode([7u8; 32]),
        "source": friendly_wallet,
        "destination": out.destination.to_base64_url_flags(!out.bounce, false),
        "value": out.amount.to_string(),
        "extra_currencies": [],
        "fwd_fee": "266669",
        "ihr_fee": "0",
        "created_lt": created_lt.to_string(),
        "body_hash": hash_b64(&out.body),
        "msg_data": msg_data,
        "message": ""
    })
}

/// The incoming external message and outgoing transfers of the transaction that executes
/// `message`, as toncenter shows them.
pub fn executed(message: &str, friendly_wallet: &str) -> (Value, Value) {
    let external = read_external(message).expect("an external message");
    let out_msgs = external
        .body
        .references()
        .iter()
        .map(|internal| {
            let out = read_internal(internal).expect("an internal message");
            out_msg_json(&out, friendly_wallet, 48_000_000_000_002)
        })
        .collect();
    (
        in_msg_json(&external, friendly_wallet),
        Value::Array(out_msgs),
    )
}

/// A transaction of `wallet` in `getTransactions`' shape. `in_msg` is `None` for an
/// incoming internal transfer of 1 TON (a top-up).
pub fn transaction(
    wallet: &str,
    lt: u64,
    utime: i64,
    in_msg: Option<Value>,
    out_msgs: Value,
) -> Value {
    let in_msg = in_msg.unwrap_or_else(|| {
        json!({
            "@type": "ext.message",
            "hash": STANDARD.encode([lt as u8; 32]),
            "source": "EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2N",
            "destination": wallet,
            "value": "1000000000",
            "extra_currencies": [],
            "fwd_fee": "266669",
            "ihr_fee": "0",
            "created_lt": (lt - 1).to_string(),
            "body_hash": "lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=",
            "msg_data": {"@type": "msg.dataRaw", "body": "te6cckEBAQEAAgAAAEysuc0=", "init_state": ""},
            "message": ""
        })
    });
    json!({
        "@type": "ext.transaction",
        "address": {"@type": "accountAddress", "account_address": wallet},
        "account": wallet,
        "utime": utime,
        "data": "te6cckEBAQEAAgAAAEysuc0=",
        "transaction_id": {"@type": "internal.transactionId", "lt": lt.to_string(), "hash": STANDARD.encode([(lt % 251) as u8 + 1; 32])},
        "fee": "2865627",
        "storage_fee": "227",
        "other_fee": "2865400",
        "in_msg": in_msg,
        "out_msgs": out_msgs
    })
}

// ---- the chain -----------------------------------------------------------------------------

/// What "now" is to the chain: the real clock (the worker signs against it), a fixed
/// moment (for tests that sign with fixed deadlines), or a clock the test moves by hand and
/// shares with the worker (for tests that go past a deadline without sleeping).
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    Fixed(i64),
    Manual(Arc<ManualWallClock>),
}

/// A message the wallet executed.
#[derive(Debug, Clone)]
pub struct Executed {
    /// The external message as broadcast (base64 bag of cells).
    pub message: String,
    pub seqno: u32,
    /// Its TEP-467 normalised hash, hex.
    pub hash_norm: String,
    /// The transfers that went out (none if the balance could not cover them).
    pub paid: Vec<Outgoing>,
}

/// toncenter over a chain holding one wallet. Cheap to clone: clones share the chain.
#[derive(Clone)]
pub struct FakeChain {
    state: Arc<Mutex<Chain>>,
}

struct Chain {
    address: TonAddress,
    friendly: String,
    public_key: Vec<u8>,
    clock: Clock,
    balance: u64,
    /// The seqno the next message must carry; 0 while the wallet is not deployed.
    seqno: u32,
    next_lt: u64,
    /// Newest first, as `getTransactions` pages them.
    transactions: Vec<Value>,
    executed: Vec<Executed>,
    /// Every broadcast received, executed or not.
    broadcasts: Vec<String>,
    seqno_get_methods: usize,
    lose_broadcasts: bool,
    lose_answers: bool,
    fail_lookups: bool,
    /// While true, transactions executed are not listed by `getTransactions`.
    index_behind: bool,
    /// How many of the newest transactions `getTransactions` leaves out.
    unindexed: usize,
    unrecognised: bool,
    comments: CommentView,
}

impl FakeChain {
    /// A chain where `wallet` (v4r2) holds `balance` and is at `seqno` (0: never deployed).
    pub fn new(wallet: &ShopWallet, balance: Nanotons, seqno: u32, clock: Clock) -> Self {
        let address = TonAddress::from_str(&wallet.address()).expect("the wallet's address");
        Self {
            state: Arc::new(Mutex::new(Chain {
                friendly: wallet.friendly_address(true, false),
                public_key: hex::decode(wallet.public_key()).expect("a hex public key"),
                address,
                clock,
                balance: balance.0,
                seqno,
                next_lt: 47_000_000_000_000,
                transactions: Vec::new(),
                executed: Vec::new(),
                broadcasts: Vec::new(),
                seqno_get_methods: 0,
                lose_broadcasts: false,
                lose_answers: false,
                fail_lookups: false,
                index_behind: false,
                unindexed: 0,
                unrecognised: false,
                comments: CommentView::Raw,
            })),
        }
    }

    fn chain(&self) -> std::sync::MutexGuard<'_, Chain> {
        self.state.lock().expect("the fake chain's lock")
    }

    /// Someone sends the wallet `amount`, `seconds_ago`.
    pub fn top_up(&self, amount: Nanotons, seconds_ago: i64) {
        let mut chain = self.chain();
        chain.balance += amount.0;
        let lt = chain.next_lt();
        let utime = chain.now() - seconds_ago;
        let mut tx = transaction(&chain.friendly, lt, utime, None, json!([]));
        tx["in_msg"]["value"] = json!(amount.0.to_string());
        chain.transactions.insert(0, tx);
    }

    /// Broadcasts vanish on the way: nothing executes and the answer is a proxy's timeout.
    /// How transactions executed from now on show their transfers' comments.
    pub fn show_comments(&self, view: CommentView) {
        self.chain().comments = view;
    }

    pub fn lose_broadcasts(&self, on: bool) {
        self.chain().lose_broadcasts = on;
    }

    /// Broadcasts execute, but the answer is lost (a proxy's timeout).
    pub fn lose_answers(&self, on: bool) {
        self.chain().lose_answers = on;
    }

    /// `getTransactions` fails.
    pub fn fail_lookups(&self, on: bool) {
        self.chain().fail_lookups = on;
    }

    /// The indexer falls behind: what executes from now on is not listed until it catches
    /// up (`false`), while the wallet's seqno and balance move at once.
    pub fn index_behind(&self, on: bool) {
        let mut chain = self.chain();
        chain.index_behind = on;
        if !on {
            chain.unindexed = 0;
        }
    }

    /// `getWalletInformation` does not recognise the wallet contract and gives no seqno.
    pub fn unrecognised_wallet(&self, on: bool) {
        self.chain().unrecognised = on;
    }

    pub fn executed(&self) -> Vec<Executed> {
        self.chain().executed.clone()
    }

    pub fn broadcasts(&self) -> Vec<String> {
        self.chain().broadcasts.clone()
    }

    pub fn balance(&self) -> Nanotons {
        Nanotons(self.chain().balance)
    }

    pub fn seqno(&self) -> u32 {
        self.chain().seqno
    }

    /// How often the seqno was asked through `runGetMethod`.
    pub fn seqno_get_methods(&self) -> usize {
        self.chain().seqno_get_methods
    }

    /// Every transfer the wallet sent to `destination` (any address form).
    pub fn paid_to(&self, destination: &str) -> Vec<Outgoing> {
        let destination = TonAddress::from_str(destination).expect("an address");
        self.chain()
            .executed
            .iter()
            .flat_map(|executed| executed.paid.iter())
            .filter(|out| out.destination == destination)
            .cloned()
            .collect()
    }
}

impl Chain {
    fn now(&self) -> i64 {
        match &self.clock {
            Clock::System => Utc::now().timestamp(),
            Clock::Fixed(now) => *now,
            Clock::Manual(clock) => clock.now().timestamp(),
        }
    }

    fn next_lt(&mut self) -> u64 {
        self.next_lt += 1_000;
        self.next_lt
    }

    fn is_ours(&self, address: &str) -> bool {
        TonAddress::from_str(address).is_ok_and(|address| address == self.address)
    }

    fn wallet_information(&self, address: &str) -> ResponseTemplate {
        if !self.is_ours(address) {
            return ok(json!({"wallet": false, "balance": "0", "account_state": "uninitialized"}));
        }
        let last = self.transactions.first().map_or_else(
            || json!({"@type": "internal.transactionId", "lt": "0", "hash": STANDARD.encode([0u8; 32])}),
            |tx| tx["transaction_id"].clone(),
        );
        let balance = self.balance.to_string();
        if self.seqno == 0 {
            ok(json!({
                "wallet": false, "balance": balance, "account_state": "uninitialized",
                "wallet_type": null, "seqno": null, "last_transaction_id": last
            }))
        } else if self.unrecognised {
            ok(
                json!({"wallet": false, "balance": balance, "account_state": "active", "last_transaction_id": last}),
            )
        } else {
            ok(json!({
                "@type": "ext.accounts.walletInformation",
                "wallet": true, "balance": balance, "account_state": "active",
                "wallet_type": "wallet v4 r2", "seqno": self.seqno, "wallet_id": WALLET_ID_V4,
                "last_transaction_id": last
            }))
        }
    }

    fn run_get_method(&mut self, body: &Value) -> ResponseTemplate {
        let address = body["address"].as_str().unwrap_or_default();
        if !self.is_ours(address) || self.seqno == 0 {
            // toncenter's answer for an account with no code to run.
            return ok(
                json!({"@type": "smc.runResult", "gas_used": 0, "stack": [], "exit_code": -13}),
            );
        }
        if body["method"] != "seqno" {
            // TVM's "method not found".
            return ok(
                json!({"@type": "smc.runResult", "gas_used": 0, "stack": [], "exit_code": 11}),
            );
        }
        self.seqno_get_methods += 1;
        ok(json!({
            "@type": "smc.runResult", "gas_used": 652,
            "stack": [["num", format!("0x{:x}", self.seqno)]], "exit_code": 0
        }))
    }

    /// Runs `message` through the wallet contract; the answer toncenter gives for it.
    fn execute(&mut self, message: &str) -> ResponseTemplate {
        let malformed = |why: String| {
            error(
                500,
                &format!("LITE_SERVER_UNKNOWN: cannot apply external message to current state : failed to parse external message: {why}"),
            )
        };
        let external = match read_external(message) {
            Ok(external) => external,
            Err(why) => return malformed(why),
        };
        if external.destination != self.address {
            return rejected_before_execution();
        }
        if self.seqno == 0 {
            // Not deployed: only a message carrying the contract (whose hash is the address)
            // can run.
            let deploys = external
                .state_init
                .as_ref()
                .is_some_and(|init| Cell::cell_hash(init) == self.address.hash_part);
            if !deploys {
                return rejected_before_execution();
            }
        }
        let read = || -> Result<_, TonCellError> {
            let mut body = external.body.parser();
            let signature = body.load_bytes(64)?;
            // What the key signed: the hash of the body after the signature.
            let signed = body.load_remaining()?;
            let mut fields = signed.parser();
            let wallet_id = fields.load_u32(32)?;
            let valid_until = fields.load_u32(32)?;
            let seqno = fields.load_u32(32)?;
            let _op = fields.load_u8(8)?;
            let modes = (0..signed.references().len())
                .map(|_| fields.load_u8(8))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((signature, signed, wallet_id, valid_until, seqno, modes))
        };
        let (signature, signed, wallet_id, valid_until, seqno, modes) = match read() {
            Ok(fields) => fields,
            Err(why) => return malformed(why.to_string()),
        };
        if i64::from(valid_until) <= self.now() {
            return not_accepted(36);
        }
        if seqno != self.seqno {
            return not_accepted(33);
        }
        if wallet_id != WALLET_ID_V4 {
            return not_accepted(34);
        }
        let key = UnparsedPublicKey::new(&ED25519, &self.public_key);
        if key
            .verify(signed.cell_hash().as_slice(), &signature)
            .is_err()
        {
            return not_accepted(35);
        }
        if modes.iter().any(|mode| *mode != SEND_MODE) {
            return error(500, "the fake chain models send mode 3 only");
        }
        let transfers = match signed
            .references()
            .iter()
            .map(read_internal)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(transfers) => transfers,
            Err(why) => return malformed(why),
        };
        let hash_norm = match normalized_hash(&external) {
            Ok(hash) => hash,
            Err(why) => return malformed(why.to_string()),
        };

        // Accepted: the seqno is consumed whatever the action phase does.
        self.seqno += 1;
        let total: u64 = transfers.iter().map(|t| t.amount).sum();
        let paid = if self.balance >= total + FEE {
            self.balance -= total + FEE;
            transfers
        } else {
            // Send mode 3 ignores the failed action: nothing goes out, the fee is still due.
            self.balance -= self.balance.min(FEE);
            Vec::new()
        };
        let lt = self.next_lt();
        let out_msgs: Vec<Value> = paid
            .iter()
            .map(|out| out_msg_json_as(out, &self.friendly, lt + 1, self.comments))
            .collect();
        let tx = transaction(
            &self.friendly,
            lt,
            self.now(),
            Some(in_msg_json(&external, &self.friendly)),
            Value::Array(out_msgs),
        );
        self.transactions.insert(0, tx);
        if self.index_behind {
            self.unindexed += 1;
        }
        self.executed.push(Executed {
            message: message.to_owned(),
            seqno,
            hash_norm: hash_norm.to_hex(),
            paid,
        });
        ok(json!({
            "@type": "raw.extMessageInfo",
            "hash": hash_b64(&external.root),
            "hash_norm": STANDARD.encode(hash_norm.as_slice()),
            "@extra": "1771000000.1:0:0.5"
        }))
    }

    /// `getTransactions`: newest first from the cursor (`lt` and `hash`, the cursor's own
    /// transaction included), at most `limit`.
    fn transactions(&self, request: &Request) -> ResponseTemplate {
        if self.fail_lookups {
            return error(503, "Service Unavailable");
        }
        let query: std::collections::HashMap<String, String> =
            request.url.query_pairs().into_owned().collect();
        if !query.get("address").is_some_and(|a| self.is_ours(a)) {
            return ok(json!([]));
        }
        let limit: usize = query
            .get("limit")
            .and_then(|limit| limit.parse().ok())
            .unwrap_or(10);
        let start = match (query.get("lt"), query.get("hash")) {
            (Some(lt), Some(hash)) => {
                let at = self.transactions.iter().position(|tx| {
                    tx["transaction_id"]["lt"] == json!(lt)
                        && tx["transaction_id"]["hash"] == json!(hash)
                });
                match at {
                    Some(at) => at,
                    None => return error(500, "LITE_SERVER_UNKNOWN: cannot locate transaction"),
                }
            }
            _ => 0,
        };
        let page: Vec<Value> = self
            .transactions
            .iter()
            .skip(start.max(self.unindexed))
            .take(limit)
            .cloned()
            .collect();
        ok(Value::Array(page))
    }
}

impl Respond for FakeChain {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut chain = self.chain();
        let method = request.url.path().trim_start_matches("/api/v2/");
        let body = || serde_json::from_slice::<Value>(&request.body).unwrap_or(Value::Null);
        match method {
            "getWalletInformation" => {
                let address = request
                    .url
                    .query_pairs()
                    .find(|(name, _)| name == "address")
                    .map(|(_, value)| value.into_owned())
                    .unwrap_or_default();
                chain.wallet_information(&address)
            }
            "runGetMethod" => chain.run_get_method(&body()),
            // The client broadcasts with `sendBocReturnHash` only.
            "sendBocReturnHash" => {
                let Some(message) = body()["boc"].as_str().map(str::to_owned) else {
                    return error(400, "boc is required");
                };
                chain.broadcasts.push(message.clone());
                if chain.lose_broadcasts {
                    return gateway_timeout();
                }
                let answer = chain.execute(&message);
                if chain.lose_answers {
                    return gateway_timeout();
                }
                answer
            }
            "getTransactions" => chain.transactions(request),
            other => error(404, &format!("no method {other}")),
        }
    }
}
