//! The shop's own TON wallet: from the 24-word seed phrase (`FRAGMENT_SEED_PHRASE`) to the
//! address Fragment is told about and the signed transfers that pay Fragment. Pure: no I/O and
//! no clock; broadcasting and looking up are [`super::toncenter`]'s job.
//!
//! What a signed transfer is, and why it is built this way:
//!
//! - **Wallet contract**: v4r2 (the default, what most TON wallets deployed) or v5r1, on
//!   workchain 0, with the standard wallet id of each. A seed phrase gives a different address
//!   per contract version; the operator picks the one their funds are in.
//! - **Send mode 3** on every transfer (pay forwarding fees from the wallet balance on top of
//!   the amount, and ignore errors in the action phase). Paying fees separately makes Fragment
//!   receive exactly what it asked for. Ignoring errors makes the wallet consume the seqno even
//!   when a transfer cannot be sent (say, the balance is short): without it the failed action
//!   phase rolls the seqno back and the same accepted message can be replayed, each replay
//!   charging the wallet's fee, until it expires. (v5r1 refuses external messages without it,
//!   exit code 137.) The consequence for callers: a transaction that executed our message did
//!   not necessarily pay; compare its out messages with what was meant.
//! - **State init at seqno 0**: a wallet that never sent anything is not deployed yet; its
//!   first external message carries the contract code and data so the chain can deploy it.
//! - **Body as a reference, no source, zero import fee**: the external message is laid out
//!   exactly in the normalised form of TEP-467, so when it carries no state init its own hash
//!   *is* its normalised hash.
//! - **The hash we look for on chain is the TEP-467 normalised hash** of the external message
//!   (source `addr_none`, import fee 0, no state init, body as a reference). Anyone relaying
//!   the signed body may re-wrap it (add or drop the state init, inline the body) without
//!   breaking the signature, which changes the plain cell hash but not the normalised one;
//!   toncenter's `sendBocReturnHash` (`hash_norm`) and index API and the explorers report it.
//!   For seqno > 0 the two coincide; for the deploying message (seqno 0) they differ.
//!
//! Secrets: the private key never leaves [`ShopWallet`] (no accessor, no `Serialize`, a `Debug`
//! that prints the address only) and is wiped from memory when the wallet is dropped. Errors
//! say what is wrong with a seed phrase (word count, the position of an unknown word, the
//! checksum) and never repeat any word of it. One limitation: tonlib-core's `Mnemonic` keeps a
//! copy of the words while the key is derived and does not wipe it.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{DateTime, Utc};
use tonlib_core::cell::{ArcCell, BagOfCells, Cell, CellBuilder, TonCellError};
use tonlib_core::tlb_types::block::state_init::StateInit;
use tonlib_core::tlb_types::tlb::TLB;
use tonlib_core::wallet::mnemonic::{Mnemonic, WORDLIST_EN_SET};
use tonlib_core::wallet::ton_wallet::TonWallet;
use tonlib_core::wallet::version_helper::VersionHelper;
use tonlib_core::wallet::versioned::{
    DEFAULT_WALLET_ID, DEFAULT_WALLET_ID_V5R1, DEFAULT_WALLET_ID_V5R1_TESTNET,
};
use tonlib_core::wallet::wallet_version::WalletVersion as TonlibVersion;
use tonlib_core::{TonAddress, TonHash};
use zeroize::{Zeroize, Zeroizing};

use super::ton::{
    Nanotons, SignError, SignedTransfer, TransferMessage, WalletAccount, WalletSigner,
};
use starledger_settings::secret::Secret;

/// Words in a TON seed phrase.
const PHRASE_WORDS: usize = 24;

/// Destinations and payloads are quoted in errors up to this many characters.
const MAX_QUOTED_CHARS: usize = 80;

/// Which wallet contract the seed phrase controls. Each gives a different address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WalletVersion {
    /// Wallet v4 revision 2, wallet id 698983191: at most 4 transfers per message.
    #[default]
    V4R2,
    /// Wallet v5 revision 1 with the mainnet wallet id: up to 255 transfers per message.
    V5R1,
    /// Wallet v5 revision 1 with the testnet wallet id (v5's id includes the network, so the
    /// same phrase has another v5 address on testnet; v4r2's is the same on both).
    V5R1Testnet,
}

impl WalletVersion {
    /// The most transfers one external message of this contract can carry.
    pub fn max_transfers(self) -> usize {
        match self {
            Self::V4R2 => 4,
            Self::V5R1 | Self::V5R1Testnet => 255,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V4R2 => "v4r2",
            Self::V5R1 => "v5r1",
            Self::V5R1Testnet => "v5r1-testnet",
        }
    }

    fn tonlib(self) -> TonlibVersion {
        match self {
            Self::V4R2 => TonlibVersion::V4R2,
            Self::V5R1 | Self::V5R1Testnet => TonlibVersion::V5R1,
        }
    }

    fn wallet_id(self) -> i32 {
        match self {
            Self::V4R2 => DEFAULT_WALLET_ID,
            Self::V5R1 => DEFAULT_WALLET_ID_V5R1,
            Self::V5R1Testnet => DEFAULT_WALLET_ID_V5R1_TESTNET,
        }
    }
}

impl fmt::Display for WalletVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WalletVersion {
    type Err = WalletError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "v4r2" => Ok(Self::V4R2),
            "v5r1" => Ok(Self::V5R1),
            "v5r1-testnet" => Ok(Self::V5R1Testnet),
            _ => Err(WalletError::UnknownVersion(quote(text))),
        }
    }
}

/// What went wrong building the wallet or a transfer. Never contains any word of the seed
/// phrase or any key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("the seed phrase has {found} words; a TON seed phrase has 24")]
    WordCount { found: usize },
    /// `position` counts from 1; the word itself is deliberately not shown.
    #[error("word {position} of the seed phrase is not in the TON word list")]
    UnknownWord { position: usize },
    #[error(
        "the seed phrase fails the TON checksum (a mistyped word, words out of order, \
         or a phrase protected by a password, which is not supported)"
    )]
    BadChecksum,
    #[error("could not derive the wallet from the seed phrase: {0}")]
    Derivation(&'static str),
    #[error("unknown wallet version {0}; expected v4r2, v5r1 or v5r1-testnet")]
    UnknownVersion(String),
    #[error("a payment needs at least one transfer")]
    NoTransfers,
    #[error("{count} transfers do not fit in one {version} message (at most {max})")]
    TooManyTransfers {
        count: usize,
        max: usize,
        version: WalletVersion,
    },
    /// `index` counts from 0, in the order given.
    #[error("transfer {index}: destination {destination} is not a TON address")]
    Destination { index: usize, destination: String },
    #[error("transfer {index}: the amount is zero")]
    ZeroAmount { index: usize },
    #[error("transfer {index}: the payload is not a base64 bag of one cell: {reason}")]
    Payload { index: usize, reason: BocError },
    #[error("valid_until {0} is outside what a wallet message can carry")]
    ValidUntil(DateTime<Utc>),
    #[error("could not build the message: {0}")]
    Cell(String),
}

/// Why a message or body the chain or Fragment shows cannot be read: a base64 bag of one
/// cell, and for a message hash a destination address too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BocError {
    #[error("not base64")]
    NotBase64,
    #[error("{0} roots instead of one")]
    RootCount(usize),
    /// The address as given, quoted.
    #[error("{0} is not a TON address")]
    NotAnAddress(String),
    /// What tonlib-core said about the cells.
    #[error("{0}")]
    Cell(String),
}

impl From<TonCellError> for BocError {
    fn from(error: TonCellError) -> Self {
        Self::Cell(error.to_string())
    }
}

impl From<TonCellError> for WalletError {
    fn from(error: TonCellError) -> Self {
        // Cell errors describe layouts and sizes, never key material.
        Self::Cell(error.to_string())
    }
}

/// The shop wallet: its keys, contract version and address. Build it once at start-up and
/// share it by reference; it is deliberately neither `Clone` nor `Serialize`.
pub struct ShopWallet {
    version: WalletVersion,
    /// tonlib-core's wallet: key pair, contract version, wallet id, address. Its secret key is
    /// wiped in `Drop`.
    inner: TonWallet,
    state_init: ArcCell,
}

impl ShopWallet {
    /// The wallet a 24-word TON seed phrase controls (no password), for the given contract.
    /// Words may be separated by any whitespace and are compared case-insensitively.
    pub fn from_seed_phrase(phrase: &Secret, version: WalletVersion) -> Result<Self, WalletError> {
        let words: Zeroizing<Vec<String>> = Zeroizing::new(
            phrase
                .expose()
                .split_whitespace()
                .map(str::to_lowercase)
                .collect(),
        );
        if words.len() != PHRASE_WORDS {
            return Err(WalletError::WordCount { found: words.len() });
        }
        if let Some(index) = words
            .iter()
            .position(|word| !WORDLIST_EN_SET.contains_key(word.as_str()))
        {
            return Err(WalletError::UnknownWord {
                position: index + 1,
            });
        }
        let mnemonic = Mnemonic::new(words.iter().map(String::as_str).collect(), &None)
            // The checks above leave the checksum as the only way for a valid-looking phrase
            // to fail; tonlib's own messages are not passed on because one of them quotes the
            // offending word.
            .map_err(|_| WalletError::BadChecksum)?;
        let keys = mnemonic
            .to_key_pair()
            .map_err(|_| WalletError::Derivation("key derivation failed"))?;
        Self::from_key_pair(keys, version)
    }

    fn from_key_pair(
        mut keys: tonlib_core::wallet::mnemonic::KeyPair,
        version: WalletVersion,
    ) -> Result<Self, WalletError> {
        let state_init = match state_init_for(&keys, version) {
            Ok(state_init) => state_init,
            Err(error) => {
                keys.secret_key.zeroize();
                return Err(error);
            }
        };
        // From here on the key lives only inside the wallet, whose Drop wipes it.
        let inner = TonWallet::new_with_params(version.tonlib(), keys, 0, version.wallet_id())
            .map_err(|_| WalletError::Derivation("could not derive the address"))?;
        let wallet = Self {
            version,
            inner,
            state_init,
        };
        // The address is the hash of the state init: checking it ties the state init we hand
        // to Fragment and attach at seqno 0 to the address we derived.
        if Cell::cell_hash(&wallet.state_init) != wallet.inner.address.hash_part {
            return Err(WalletError::Derivation(
                "the state init does not hash to the address",
            ));
        }
        Ok(wallet)
    }

    pub fn version(&self) -> WalletVersion {
        self.version
    }

    /// Raw form, `0:<64 hex>`: how the chain and toncenter name it unambiguously.
    pub fn address(&self) -> String {
        raw_address(&self.inner.address)
    }

    /// User-friendly form (url-safe base64). Bounceable for contracts; non-bounceable is the
    /// form to give someone who tops the wallet up while it is not yet deployed, so their
    /// transfer is not bounced back.
    pub fn friendly_address(&self, bounceable: bool, testnet: bool) -> String {
        self.inner.address.to_base64_url_flags(!bounceable, testnet)
    }

    /// Ed25519 public key, 64 hex characters.
    pub fn public_key(&self) -> String {
        hex::encode(&self.inner.key_pair.public_key)
    }

    /// What Fragment's `getBuyStarsLink` wants as `account`: address, public key and state
    /// init (base64 bag of cells).
    pub fn account(&self) -> Result<WalletAccount, WalletError> {
        Ok(WalletAccount {
            address: self.address(),
            public_key: self.public_key(),
            state_init: boc_base64(&self.state_init)?,
        })
    }

    /// Signs one external message that makes the wallet send `transfers`, accepted by the
    /// wallet only while its seqno is `seqno` and until `valid_until`. At seqno 0 the message
    /// also deploys the wallet.
    pub fn sign_transfer(
        &self,
        seqno: u32,
        valid_until: DateTime<Utc>,
        transfers: &[TransferMessage],
    ) -> Result<SignedTransfer, WalletError> {
        if transfers.is_empty() {
            return Err(WalletError::NoTransfers);
        }
        let max = self.version.max_transfers();
        if transfers.len() > max {
            return Err(WalletError::TooManyTransfers {
                count: transfers.len(),
                max,
                version: self.version,
            });
        }
        let expire_at = u32::try_from(valid_until.timestamp())
            .ok()
            .filter(|&at| at > 0)
            .ok_or(WalletError::ValidUntil(valid_until))?;
        let messages = transfers
            .iter()
            .enumerate()
            .map(|(index, transfer)| internal_message(index, transfer).map(Cell::to_arc))
            .collect::<Result<Vec<_>, _>>()?;
        let body = self
            .inner
            .create_external_body(expire_at, seqno, &messages)?;
        let signed = self.inner.sign_external_body(&body)?.to_arc();
        let init = (seqno == 0).then_some(&self.state_init);
        let external = external_message(&self.inner.address, init, &signed)?;
        let message_hash = if init.is_none() {
            external.cell_hash()
        } else {
            external_message(&self.inner.address, None, &signed)?.cell_hash()
        };
        Ok(SignedTransfer {
            seqno,
            valid_until,
            message: boc_base64(&external)?,
            message_hash: message_hash.to_hex(),
            transfers: transfers.to_vec(),
        })
    }
}

impl Drop for ShopWallet {
    fn drop(&mut self) {
        self.inner.key_pair.secret_key.zeroize();
    }
}

impl fmt::Debug for ShopWallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShopWallet")
            .field("version", &self.version)
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

/// The contract's code and initial data for this key: the wallet's `StateInit` cell.
fn state_init_for(
    keys: &tonlib_core::wallet::mnemonic::KeyPair,
    version: WalletVersion,
) -> Result<ArcCell, WalletError> {
    let data = VersionHelper::get_data(version.tonlib(), keys, version.wallet_id())
        .map_err(|_| WalletError::Derivation("could not build the wallet data"))?;
    let code = VersionHelper::get_code(version.tonlib())
        .map_err(|_| WalletError::Derivation("no contract code for this version"))?
        .clone();
    Ok(StateInit::new(code, data.to_arc()).to_cell()?.to_arc())
}

/// The TEP-467 normalised hash (hex) of an external message to `destination` with this body:
/// what [`SignedTransfer::message_hash`] holds and what a transaction's incoming message is
/// matched against. `destination` in any address form, `body` a base64 bag of one cell.
pub(crate) fn normalized_message_hash(destination: &str, body: &str) -> Result<String, BocError> {
    let destination =
        parse_address(destination).ok_or_else(|| BocError::NotAnAddress(quote(destination)))?;
    let body = parse_boc(body)?;
    Ok(external_message(&destination.address, None, &body)?
        .cell_hash()
        .to_hex())
}

/// The raw `wc:hex` form of an address given in any form, or `None` if it is not one.
pub fn raw_form(address: &str) -> Option<String> {
    parse_address(address).map(|parsed| raw_address(&parsed.address))
}

/// Whether two addresses, each in any form, name the same account: how a transfer Fragment
/// asked for is matched with one the chain reports (toncenter reports user-friendly forms,
/// whose bounce and network flags do not change the account).
pub fn same_address(a: &str, b: &str) -> bool {
    match (parse_address(a), parse_address(b)) {
        (Some(a), Some(b)) => a.address == b.address,
        _ => false,
    }
}

/// Whether `text` is a TON address, raw (`0:<hex>`) or user-friendly.
pub fn is_address(text: &str) -> bool {
    parse_address(text).is_some()
}

/// A message body as a [`TransferMessage::payload`]: `None` for an empty cell, which is how
/// the chain shows a transfer sent without a body.
pub(crate) fn payload_from_body(body: &str) -> Result<Option<String>, BocError> {
    let cell = parse_boc(body)?;
    let empty = cell.bit_len() == 0 && cell.references().is_empty();
    Ok((!empty).then(|| body.to_owned()))
}

/// A destination address and whether to let the transfer bounce back.
struct Destination {
    address: TonAddress,
    bounceable: bool,
}

/// Raw `wc:hex` or user-friendly base64 (url-safe or standard). A user-friendly address says
/// whether it wants bounceable transfers; a raw one does not, and gets bounceable ones, the
/// safe default for the deployed contracts Fragment has us pay (a transfer to a contract that
/// cannot take it comes back instead of being lost).
fn parse_address(text: &str) -> Option<Destination> {
    let text = text.trim();
    if text.len() == 48 {
        let flags = TonAddress::from_base64_url_flags(text)
            .or_else(|_| TonAddress::from_base64_std_flags(text))
            .ok()?;
        let (address, non_bounceable, _testnet) = flags;
        return Some(Destination {
            address,
            bounceable: !non_bounceable,
        });
    }
    let (workchain, hash) = text.split_once(':')?;
    let workchain: i8 = workchain.parse().ok()?;
    let hash = TonHash::from_hex(hash).ok()?;
    Some(Destination {
        address: TonAddress::new(i32::from(workchain), hash),
        bounceable: true,
    })
}

/// A base64 bag of cells with exactly one root. Fragment and toncenter send standard base64;
/// the url-safe alphabet and missing padding are accepted too.
pub(crate) fn parse_boc(text: &str) -> Result<ArcCell, BocError> {
    let text = text.trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or(BocError::NotBase64)?;
    let boc = BagOfCells::parse(&bytes)?;
    if boc.num_roots() != 1 {
        return Err(BocError::RootCount(boc.num_roots()));
    }
    Ok(boc.single_root()?)
}

/// The internal message the wallet sends for one transfer (`int_msg_info$0` of block.tlb).
fn internal_message(index: usize, transfer: &TransferMessage) -> Result<Cell, WalletError> {
    let destination =
        parse_address(&transfer.destination).ok_or_else(|| WalletError::Destination {
            index,
            destination: quote(&transfer.destination),
        })?;
    if transfer.amount == Nanotons(0) {
        return Err(WalletError::ZeroAmount { index });
    }
    let body = transfer
        .payload
        .as_deref()
        .map(parse_boc)
        .transpose()
        .map_err(|reason| WalletError::Payload { index, reason })?;
    let mut cell = CellBuilder::new();
    cell.store_bit(false)? // int_msg_info$0
        .store_bit(true)? // ihr_disabled
        .store_bit(destination.bounceable)?
        .store_bit(false)? // bounced
        .store_u8(2, 0)?; // src: addr_none, the wallet's own address is filled in by the chain
    store_std_address(&mut cell, &destination.address)?;
    store_coins(&mut cell, transfer.amount)?;
    cell.store_bit(false)? // no extra currencies
        .store_u8(4, 0)? // ihr_fee
        .store_u8(4, 0)? // fwd_fee
        .store_u64(64, 0)? // created_lt
        .store_u32(32, 0)? // created_at
        .store_bit(false)?; // no state init
    match body {
        None => {
            // An empty body, inline.
            cell.store_bit(false)?;
        }
        // Inline when it fits (the usual layout of wallet software), else as a reference.
        Some(body) if body.bit_len() < cell.remaining_bits() => {
            cell.store_bit(false)?.store_cell(&body)?;
        }
        Some(body) => {
            cell.store_bit(true)?.store_reference(&body)?;
        }
    }
    Ok(cell.build()?)
}

/// An external message to the wallet (`ext_in_msg_info$10`) in TEP-467's normalised layout,
/// plus the state init when given.
fn external_message(
    wallet: &TonAddress,
    state_init: Option<&ArcCell>,
    body: &ArcCell,
) -> Result<Cell, TonCellError> {
    let mut cell = CellBuilder::new();
    cell.store_u8(2, 0b10)? // ext_in_msg_info$10
        .store_u8(2, 0)?; // src: addr_none
    store_std_address(&mut cell, wallet)?;
    cell.store_u8(4, 0)?; // import_fee: 0
    match state_init {
        Some(init) => {
            cell.store_bit(true)?
                .store_bit(true)?
                .store_reference(init)?;
        }
        None => {
            cell.store_bit(false)?;
        }
    }
    cell.store_bit(true)?.store_reference(body)?;
    cell.build()
}

/// `addr_std$10 anycast:nothing workchain:int8 address:bits256`.
fn store_std_address(cell: &mut CellBuilder, address: &TonAddress) -> Result<(), TonCellError> {
    cell.store_u8(2, 0b10)?
        .store_bit(false)?
        .store_i8(8, address.workchain as i8)?
        .store_slice(address.hash_part.as_slice())?;
    Ok(())
}

/// `Grams`: a 4-bit byte count, then the amount in that many bytes, big-endian.
fn store_coins(cell: &mut CellBuilder, amount: Nanotons) -> Result<(), TonCellError> {
    let bytes = (u64::BITS - amount.0.leading_zeros()).div_ceil(8) as usize;
    cell.store_u8(4, bytes as u8)?;
    if bytes > 0 {
        cell.store_u64(bytes * 8, amount.0)?;
    }
    Ok(())
}

fn raw_address(address: &TonAddress) -> String {
    format!("{}:{}", address.workchain, address.hash_part.to_hex())
}

fn boc_base64(cell: &Cell) -> Result<String, WalletError> {
    let bytes = BagOfCells::from_root(cell.clone()).serialize(true)?;
    Ok(STANDARD.encode(bytes))
}

fn quote(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests;

/// The shop wallet as the fulfilment worker pays with: its Fragment account worked out once,
/// when the wallet is opened, so a wallet that cannot describe itself stops start-up instead
/// of failing payment after payment.
pub struct PayingWallet {
    wallet: ShopWallet,
    account: WalletAccount,
}

impl PayingWallet {
    pub fn new(wallet: ShopWallet) -> Result<Self, WalletError> {
        let account = wallet.account()?;
        Ok(Self { wallet, account })
    }

    pub fn wallet(&self) -> &ShopWallet {
        &self.wallet
    }
}

impl fmt::Debug for PayingWallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.wallet.fmt(f)
    }
}

impl WalletSigner for PayingWallet {
    fn account(&self) -> WalletAccount {
        self.account.clone()
    }

    fn sign_transfer(
        &self,
        seqno: u32,
        valid_until: DateTime<Utc>,
        transfers: &[TransferMessage],
    ) -> Result<SignedTransfer, SignError> {
        self.wallet
            .sign_transfer(seqno, valid_until, transfers)
            .map_err(|error| SignError(error.to_string()))
    }
}
