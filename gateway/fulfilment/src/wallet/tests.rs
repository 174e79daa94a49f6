//! Tests of the shop wallet against published vectors from other TON implementations, and of
//! the messages it signs, taken apart again bit by bit and checked with an independent
//! Ed25519 implementation (ring).

use chrono::TimeZone;
use tonlib_core::cell::CellParser;
use tonlib_core::tlb_types::block::message::{CommonMsgInfo, Message};
use tonlib_core::wallet::mnemonic::KeyPair;
use tonlib_core::wallet::versioned::v4::WalletExtMsgBodyV4;
use tonlib_core::wallet::versioned::v5::WalletExtMsgBodyV5;

use super::*;

/// Published by Trust Wallet's wallet-core, `rust/tw_tests/tests/chains/ton/ton_wallet.rs`
/// (`test_ton_wallet_get_key`): this phrase's Ed25519 private key.
const TRUST_WALLET_PHRASE: &str = "protect drill sugar gallery note admit input wrist chicken \
    swarm scheme hedgehog orbit ritual glove ski buddy slogan fragile sun delay toy lucky require";
const TRUST_WALLET_PRIVATE_KEY: &str =
    "cdcea50b87d3f1ca859e7b2bdf9a5339b7b6804b5c70ac85198829f9607dc43b";

/// Published by tonlib-rs (ston-fi), `core/src/wallet/ton_wallet.rs` (`test_ton_wallet_create`):
/// phrase → wallet v4r2 address, and another phrase → wallet v5r1 address.
const TONLIB_PHRASE: &str = "fancy carpet hello mandate penalty trial consider property top \
    vicious exit rebuild tragic profit urban major total month holiday sudden rib gather media vicious";
const TONLIB_V4R2_ADDRESS: &str = "EQCDM_QGggZ3qMa_f3lRPk4_qLDnLTqdi6OkMAV2NB9r5TG3";
const TONLIB_PHRASE_V5: &str = "section garden tomato dinner season dice renew length useful \
    spin trade intact use universe what post spike keen mandate behind concert egg doll rug";
const TONLIB_V5R1_ADDRESS: &str = "UQDv2YSmlrlLH3hLNOVxC8FcQf4F9eGNs4vb2zKma4txo6i3";

/// A cell's representation hash. (On `Arc<Cell>`, `cell_hash` would resolve to tonlib's
/// fallible `TLB::cell_hash`, which re-serialises the cell first.)
trait ReprHash {
    fn repr_hash(&self) -> TonHash;
}

impl ReprHash for Cell {
    fn repr_hash(&self) -> TonHash {
        Cell::cell_hash(self)
    }
}

fn phrase(words: &str) -> Secret {
    Secret::new(words)
}

fn wallet(words: &str, version: WalletVersion) -> ShopWallet {
    ShopWallet::from_seed_phrase(&phrase(words), version).unwrap()
}

/// A wallet from a raw 32-byte Ed25519 seed, for vectors published as private keys. The
/// public key comes from ring, not from the signer under test.
fn wallet_from_key(seed: &[u8], version: WalletVersion) -> ShopWallet {
    let ring_keys = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed).unwrap();
    let public_key = ring::signature::KeyPair::public_key(&ring_keys)
        .as_ref()
        .to_vec();
    let secret_key = [seed, public_key.as_slice()].concat();
    ShopWallet::from_key_pair(
        KeyPair {
            public_key,
            secret_key,
        },
        version,
    )
    .unwrap()
}

fn cell_from_base64(boc: &str) -> ArcCell {
    parse_boc(boc).unwrap()
}

fn at(unix: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(unix, 0).unwrap()
}

fn transfer(destination: &str, amount: u64, payload: Option<&str>) -> TransferMessage {
    TransferMessage {
        destination: destination.to_owned(),
        amount: Nanotons(amount),
        payload: payload.map(str::to_owned),
    }
}

/// A payload as Fragment sends one: a text comment (op 0, then the text) in a bag of cells.
fn comment_payload(text: &str) -> String {
    let mut cell = CellBuilder::new();
    cell.store_u32(32, 0).unwrap().store_string(text).unwrap();
    boc_base64(&cell.build().unwrap().to_arc()).unwrap()
}

const FRAGMENT_ADDRESS: &str = "EQBAjaOyi2wGWlk-EDkSabqqnF-MrrwMadnwqrurKpkla9nE";

// ---- addresses from seed phrases and keys ------------------------------------------------

#[test]
fn trust_wallet_phrase_derives_the_published_private_key() {
    let wallet = wallet(TRUST_WALLET_PHRASE, WalletVersion::V4R2);
    assert_eq!(
        hex::encode(&wallet.inner.key_pair.secret_key[..32]),
        TRUST_WALLET_PRIVATE_KEY
    );
}

#[test]
fn trust_wallet_private_keys_give_the_published_v4r2_addresses() {
    // Trust Wallet's wallet-core, `rust/tw_tests/tests/chains/ton/ton_address.rs`
    // (`test_ton_address_derive`): private key → wallet v4r2 address, non-bounceable.
    let vectors = [
        (
            "5849481021e305dfdf9f0eaf87e07f15efec3fde8d8ed639c9fcf0bc351d998b",
            "UQAACKJfEIfI5vkht_w3NYk8k-OU5Xl_jq9XNmmkcPaUO-tB",
        ),
        (
            "4a22d994755145e4a4ce7263bdb3a8a70e449c1fccdd299f80df862bd4dcb930",
            "UQA3fRa_AHKBo1Lu8QF5xm_fiCLi197NfoPbeta0VJyvKa76",
        ),
        (
            "fbfbc640c4cd4649161a935562217f1caecf6e7f3a2818921f9ee336741a48cb",
            "UQAzCS7JoSiOi1BdH4nFkuvUwbBjxUzPx1AhQKwiwXAv27Xs",
        ),
    ];
    for (key, address) in vectors {
        let wallet = wallet_from_key(&hex::decode(key).unwrap(), WalletVersion::V4R2);
        assert_eq!(wallet.friendly_address(false, false), address, "{key}");
    }
}

#[test]
fn tonlib_phrases_give_the_published_v4r2_and_v5r1_addresses() {
    let v4 = wallet(TONLIB_PHRASE, WalletVersion::V4R2);
    assert_eq!(v4.friendly_address(true, false), TONLIB_V4R2_ADDRESS);
    let v5 = wallet(TONLIB_PHRASE_V5, WalletVersion::V5R1);
    assert_eq!(v5.friendly_address(false, false), TONLIB_V5R1_ADDRESS);
    // v5's wallet id includes the network, v4's does not.
    let v5_testnet = wallet(TONLIB_PHRASE_V5, WalletVersion::V5R1Testnet);
    assert_ne!(v5_testnet.address(), v5.address());
}

#[test]
fn addresses_come_in_raw_and_user_friendly_forms() {
    let wallet = wallet(TONLIB_PHRASE, WalletVersion::V4R2);
    let raw = wallet.address();
    let (workchain, hash) = raw.split_once(':').unwrap();
    assert_eq!(workchain, "0");
    assert_eq!(hash.len(), 64);
    assert!(hash
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    for (bounceable, testnet, prefix) in [
        (true, false, "EQ"),
        (false, false, "UQ"),
        (true, true, "kQ"),
        (false, true, "0Q"),
    ] {
        let friendly = wallet.friendly_address(bounceable, testnet);
        assert!(friendly.starts_with(prefix), "{friendly}");
        let parsed = parse_address(&friendly).unwrap();
        assert_eq!(raw_address(&parsed.address), raw);
        assert_eq!(parsed.bounceable, bounceable);
    }
}

#[test]
fn the_account_fragment_gets_is_the_address_key_and_state_init() {
    let wallet = wallet(TONLIB_PHRASE, WalletVersion::V4R2);
    let account = wallet.account().unwrap();
    assert_eq!(account.address, wallet.address());
    assert_eq!(account.public_key.len(), 64);
    assert_eq!(
        account.public_key,
        hex::encode(&wallet.inner.key_pair.secret_key[32..])
    );
    // The address is the hash of the state init.
    let state_init = cell_from_base64(&account.state_init);
    assert_eq!(
        format!("0:{}", state_init.repr_hash().to_hex()),
        account.address
    );
}

#[test]
fn state_init_matches_trust_wallets_for_the_same_public_key() {
    // Trust Wallet's wallet-core, `ton_wallet.rs`: the v4r2 and v5r1 (mainnet) state init of
    // public key f229a937…: the contract code and data cells must be bit-identical.
    const PUBLIC_KEY: &str = "f229a9371fa7c2108b3d90ea22c9be705ff5d0cfeaee9cbb9366ff0171579357";
    const V4R2: &str = "te6cckECFgEAAwQAAgE0AQIBFP8A9KQT9LzyyAsDAFEAAAAAKamjF/IpqTcfp8IQiz2Q6iLJvnBf9dDP6u6cu5Nm/wFxV5NXQAIBIAQFAgFIBgcE+PKDCNcYINMf0x/THwL4I7vyZO1E0NMf0x/T//QE0VFDuvKhUVG68qIF+QFUEGT5EPKj+AAkpMjLH1JAyx9SMMv/UhD0AMntVPgPAdMHIcAAn2xRkyDXSpbTB9QC+wDoMOAhwAHjACHAAuMAAcADkTDjDQOkyMsfEssfy/8ICQoLAubQAdDTAyFxsJJfBOAi10nBIJJfBOAC0x8hghBwbHVnvSKCEGRzdHK9sJJfBeAD+kAwIPpEAcjKB8v/ydDtRNCBAUDXIfQEMFyBAQj0Cm+hMbOSXwfgBdM/yCWCEHBsdWe6kjgw4w0DghBkc3RyupJfBuMNDA0CASAODwBu0gf6ANTUIvkABcjKBxXL/8nQd3SAGMjLBcsCIs8WUAX6AhTLaxLMzMlz+wDIQBSBAQj0UfKnAgBwgQEI1xj6ANM/yFQgR4EBCPRR8qeCEG5vdGVwdIAYyMsFywJQBs8WUAT6AhTLahLLH8s/yXP7AAIAbIEBCNcY+gDTPzBSJIEBCPRZ8qeCEGRzdHJwdIAYyMsFywJQBc8WUAP6AhPLassfEss/yXP7AAAK9ADJ7VQAeAH6APQEMPgnbyIwUAqhIb7y4FCCEHBsdWeDHrFwgBhQBMsFJs8WWPoCGfQAy2kXyx9SYMs/IMmAQPsABgCKUASBAQj0WTDtRNCBAUDXIMgBzxb0AMntVAFysI4jghBkc3Rygx6xcIAYUAXLBVADzxYj+gITy2rLH8s/yYBA+wCSXwPiAgEgEBEAWb0kK29qJoQICga5D6AhhHDUCAhHpJN9KZEM5pA+n/mDeBKAG3gQFImHFZ8xhAIBWBITABG4yX7UTQ1wsfgAPbKd+1E0IEBQNch9AQwAsjKB8v/ydABgQEI9ApvoTGACASAUFQAZrc52omhAIGuQ64X/wAAZrx32omhAEGuQ64WPwEXtMkg=";
    const V5R1: &str = "te6cckECFgEAArEAAgE0AQIBFP8A9KQT9LzyyAsDAFGAAAAAP///iPkU1JuP0+EIRZ7IdRFk3zgv+uhn9XdOXcmzf4C4q8mroAIBIAQFAgFIBgcBAvIIAtzQINdJwSCRW49jINcLHyCCEGV4dG69IYIQc2ludL2wkl8D4IIQZXh0brqOtIAg1yEB0HTXIfpAMPpE+Cj6RDBYvZFb4O1E0IEBQdch9AWDB/QOb6ExkTDhgEDXIXB/2zzgMSDXSYECgLmRMOBw4hIJAgEgCgsBHiDXCx+CEHNpZ2668uCKfwkB5o7w7aLt+yGDCNciAoMI1yMggCDXIdMf0x/TH+1E0NIA0x8g0x/T/9cKAAr5AUDM+RCaKJRfCtsx4fLAh98Cs1AHsPLQhFEluvLghVA2uvLghvgju/LQiCKS+ADeAaR/yMoAyx8BzxbJ7VQgkvgP3nDbPNgSAgEgDA0AGb5fD2omhAgKDrkPoCwCAW4ODwIBSBARABmtznaiaEAg65Drhf/AABmvHfaiaEAQ65DrhY/AABezJftRNBx1yHXCx+AAEbJi+1E0NcKAIAP27aLt+wL0BCFukmwhjkwCIdc5MHCUIccAs44tAdcoIHYeQ2wg10nACPLgkyDXSsAC8uCTINcdBscSwgBSMLDy0InXTNc5MAGk6GwShAe78uCT10rAAPLgk+1V4tIAAcAAkVvg69csCBQgkXCWAdcsCBwS4lIQseMPINdKExQVAJYB+kAB+kT4KPpEMFi68uCR7UTQgQFB1xj0BQSdf8jKAEAEgwf0U/Lgi44UA4MH9Fvy4Iwi1woAIW4Bs7Dy0JDiyFADzxYS9ADJ7VQAcjDXLAgkji0h8uCS0gDtRNDSAFETuvLQj1RQMJExnAGBAUDXIdcKAPLgjuLIygBYzxbJ7VST8sCN4gAQk1vbMeHXTNBAlw92";
    let keys = KeyPair {
        public_key: hex::decode(PUBLIC_KEY).unwrap(),
        secret_key: Vec::new(),
    };
    for (version, published) in [(WalletVersion::V4R2, V4R2), (WalletVersion::V5R1, V5R1)] {
        let ours = state_init_for(&keys, version).unwrap();
        assert_eq!(
            ours.repr_hash(),
            cell_from_base64(published).repr_hash(),
            "{version}"
        );
    }
}

// ---- a transfer signed exactly as tonweb signs it ----------------------------------------

/// tonweb's test suite, `src/contract/wallet/wallet-contract.test.ts` (toncenter/tonweb): the
/// v4R2 wallet of the key pair from seed bytes 1…9,1…9,1…9,1…5 (`src/test/common.ts`), and its
/// transfer of 1050 nanotons at seqno 1 (`transferQueryBoc64.seqno1`).
const TONWEB_V4R2_ADDRESS: &str = "UQAXQH-lFETZ9KncaE4qs0XVTAYMMC2AGSKPNKhvt_Do45ym";
const TONWEB_V4R2_SEQNO1: &str = "te6ccsEBAgEAqAAAdAHhiAAugP9KKImz6VO40JxVZouqmAwYYFsAMkUeaVDfb+HRxgXP0W/9tn/isLJHocZm+X+rkUKUaHcayZHnkXBxatUcOZVTw2Eh1n8al8OUhOTEg23d1SWkpws9C9ymkVPlZeghTU0YuAAAAeAAAAAIABwBAGRCADCV54cF5hNtqa3MluJLjSTVk2kgOyb4K6usQkqf4ks9ECDQAAAAAAAAAAAAAAAAAPjRRL8=";

fn tonweb_seed() -> Vec<u8> {
    (0..32u8).map(|i| i % 9 + 1).collect()
}

/// The parts of an external message to a wallet, read without any of our building code.
struct External {
    destination: TonAddress,
    state_init: Option<ArcCell>,
    /// Signature and wallet request, as signed.
    body: ArcCell,
}

fn read_external(cell: &Cell) -> External {
    let mut parser = cell.parser();
    assert_eq!(parser.load_u8(2).unwrap(), 0b10, "ext_in_msg_info");
    assert_eq!(parser.load_u8(2).unwrap(), 0, "src is addr_none");
    let destination = parser.load_address().unwrap();
    assert_eq!(parser.load_coins().unwrap().to_string(), "0", "import fee");
    let state_init = parser.load_bit().unwrap().then(|| load_either(&mut parser));
    let body = load_either(&mut parser);
    External {
        destination,
        state_init,
        body,
    }
}

fn load_either(parser: &mut CellParser) -> ArcCell {
    if parser.load_bit().unwrap() {
        parser.next_reference().unwrap()
    } else {
        parser.load_remaining().unwrap().to_arc()
    }
}

/// A v4 body: the 512-bit signature first, then the signed request.
fn split_v4(body: &Cell) -> (Vec<u8>, Cell) {
    let mut parser = body.parser();
    let signature = parser.load_bytes(64).unwrap();
    (signature, parser.load_remaining().unwrap())
}

/// A v5 body: the signed request first, the 512-bit signature last.
fn split_v5(body: &Cell) -> (Vec<u8>, Cell) {
    let mut parser = body.parser();
    let request_bits = body.bit_len() - 512;
    let mut request = CellBuilder::new();
    request
        .store_bits(request_bits, &parser.load_bits(request_bits).unwrap())
        .unwrap()
        .store_references(body.references())
        .unwrap();
    (parser.load_bytes(64).unwrap(), request.build().unwrap())
}

fn assert_signed_by(wallet: &ShopWallet, signature: &[u8], request: &Cell) {
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ED25519,
        hex::decode(wallet.public_key()).unwrap(),
    );
    key.verify(request.repr_hash().as_slice(), signature)
        .expect("the signature verifies with the wallet's public key");
}

#[test]
fn a_transfer_signs_exactly_as_tonweb_signs_it() {
    let wallet = wallet_from_key(&tonweb_seed(), WalletVersion::V4R2);
    assert_eq!(wallet.friendly_address(false, false), TONWEB_V4R2_ADDRESS);

    let published = read_external(&cell_from_base64(TONWEB_V4R2_SEQNO1));
    let (_, request) = split_v4(&published.body);
    let request = WalletExtMsgBodyV4::from_cell(&request).unwrap();
    assert_eq!(request.msg_seqno, 1);
    assert_eq!(request.msgs_modes, vec![3]);
    let sent = Message::from_cell(&request.msgs[0]).unwrap();
    let CommonMsgInfo::Int(info) = sent.info else {
        panic!("not an internal message")
    };
    assert_eq!(info.value.grams.amount.to_string(), "1050");
    // tonweb sends to a non-bounceable user-friendly address: rebuild that form.
    let destination = TonAddress::from_msg_address(info.dest).unwrap();
    assert!(!info.bounce);

    let ours = wallet
        .sign_transfer(
            1,
            at(i64::from(request.valid_until)),
            &[transfer(
                &destination.to_base64_url_flags(true, false),
                1050,
                None,
            )],
        )
        .unwrap();
    let ours_external = read_external(&cell_from_base64(&ours.message));
    // Ed25519 signatures are deterministic: same key, same request, same signature.
    assert_eq!(ours_external.body.repr_hash(), published.body.repr_hash());
    // tonweb inlines the body, we reference it; the normalised hashes agree.
    assert_eq!(
        ours.message_hash,
        external_message(&published.destination, None, &published.body)
            .unwrap()
            .repr_hash()
            .to_hex()
    );
}

// ---- signed transfers taken apart ----------------------------------------------------------

#[test]
fn a_signed_transfer_carries_what_was_asked_and_verifies() {
    let wallet = wallet(TONLIB_PHRASE, WalletVersion::V4R2);
    let payload = comment_payload("Telegram Premium for 3 months \n\nRef#abc123");
    let raw_destination = format!("0:{}", "ab".repeat(32));
    let transfers = [
        transfer(FRAGMENT_ADDRESS, 2_500_000_000, Some(&payload)),
        transfer(&raw_destination, 1, None),
    ];
    let valid_until = at(1_900_000_000);
    let signed = wallet.sign_transfer(7, valid_until, &transfers).unwrap();
    assert_eq!(signed.seqno, 7);
    assert_eq!(signed.valid_until, valid_until);
    assert_eq!(signed.transfers, transfers);
    assert_eq!(signed.total(), Some(Nanotons(2_500_000_001)));

    let root = cell_from_base64(&signed.message);
    assert_eq!(root.repr_hash().to_hex(), signed.message_hash);
    let external = read_external(&root);
    assert_eq!(raw_address(&external.destination), wallet.address());
    assert!(external.state_init.is_none());

    let (signature, request) = split_v4(&external.body);
    assert_signed_by(&wallet, &signature, &request);
    let request = WalletExtMsgBodyV4::from_cell(&request).unwrap();
    assert_eq!(request.subwallet_id, DEFAULT_WALLET_ID);
    assert_eq!(request.msg_seqno, 7);
    assert_eq!(request.valid_until, 1_900_000_000);
    assert_eq!(request.msgs_modes, vec![3, 3]);

    let expected = [
        (FRAGMENT_ADDRESS, true, "2500000000", Some(&payload)),
        (raw_destination.as_str(), true, "1", None),
    ];
    for (message, (destination, bounce, amount, payload)) in request.msgs.iter().zip(expected) {
        let message = Message::from_cell(message).unwrap();
        let CommonMsgInfo::Int(info) = message.info else {
            panic!("not an internal message")
        };
        let to = TonAddress::from_msg_address(info.dest).unwrap();
        assert_eq!(
            raw_address(&to),
            raw_address(&parse_address(destination).unwrap().address)
        );
        assert_eq!(info.bounce, bounce);
        assert_eq!(info.value.grams.amount.to_string(), amount);
        assert!(message.init.is_none());
        match payload {
            Some(payload) => assert_eq!(
                message.body.value.repr_hash(),
                cell_from_base64(payload).repr_hash()
            ),
            None => assert_eq!(message.body.value.bit_len(), 0),
        }
    }
}

#[test]
fn seqno_zero_deploys_the_wallet_and_later_seqnos_do_not() {
    let wallet = wallet(TONLIB_PHRASE, WalletVersion::V4R2);
    let transfers = [transfer(FRAGMENT_ADDRESS, 1_000, None)];

    let first = wallet
        .sign_transfer(0, at(1_900_000_000), &transfers)
        .unwrap();
    let root = cell_from_base64(&first.message);
    let external = read_external(&root);
    let state_init = external.state_init.expect("seqno 0 carries the state init");
    assert_eq!(
        format!("0:{}", state_init.repr_hash().to_hex()),
        wallet.address()
    );
    // The hash looked for on chain is the normalised one, without the state init.
    assert_ne!(root.repr_hash().to_hex(), first.message_hash);
    assert_eq!(
        first.message_hash,
        external_message(&external.destination, None, &external.body)
            .unwrap()
            .repr_hash()
            .to_hex()
    );

    let later = wallet
        .sign_transfer(1, at(1_900_000_000), &transfers)
        .unwrap();
    let root = cell_from_base64(&later.message);
    assert!(read_external(&root).state_init.is_none());
    assert_eq!(root.repr_hash().to_hex(), later.message_hash);
    assert_ne!(later.message_hash, first.message_hash);
}

#[test]
fn the_hash_looked_for_on_chain_can_be_recomputed_from_destination_and_body() {
    let wallet = wallet(TONLIB_PHRASE, WalletVersion::V4R2);
    for seqno in [0, 3] {
        let signed = wallet
            .sign_transfer(
                seqno,
                at(1_900_000_000),
                &[transfer(FRAGMENT_ADDRESS, 5, None)],
            )
            .unwrap();
        let external = read_external(&cell_from_base64(&signed.message));
        // What toncenter reports for an incoming message: the destination in user-friendly
        // form and the body as a bag of cells.
        let body = boc_base64(&external.body).unwrap();
        let destination = wallet.friendly_address(true, false);
        assert_eq!(
            normalized_message_hash(&destination, &body).unwrap(),
            signed.message_hash
        );
    }
    assert!(normalized_message_hash("nowhere", "te6cc").is_err());
}

#[test]
fn v4r2_carries_at_most_four_transfers_and_v5r1_more() {
    let transfers: Vec<_> = (1..=5)
        .map(|n| transfer(FRAGMENT_ADDRESS, n, None))
        .collect();
    let v4 = wallet(TONLIB_PHRASE, WalletVersion::V4R2);
    assert!(v4
        .sign_transfer(1, at(1_900_000_000), &transfers[..4])
        .is_ok());
    assert_eq!(
        v4.sign_transfer(1, at(1_900_000_000), &transfers),
        Err(WalletError::TooManyTransfers {
            count: 5,
            max: 4,
            version: WalletVersion::V4R2
        })
    );

    let v5 = wallet(TONLIB_PHRASE_V5, WalletVersion::V5R1);
    let signed = v5.sign_transfer(9, at(1_900_000_000), &transfers).unwrap();
    let external = read_external(&cell_from_base64(&signed.message));
    assert_eq!(raw_address(&external.destination), v5.address());
    let (signature, request) = split_v5(&external.body);
    assert_signed_by(&v5, &signature, &request);
    let request = WalletExtMsgBodyV5::from_cell(&request).unwrap();
    assert_eq!(request.wallet_id, DEFAULT_WALLET_ID_V5R1);
    assert_eq!(request.msg_seqno, 9);
    assert_eq!(request.valid_until, 1_900_000_000);
    // v5 refuses external messages whose sends may fail the action phase (exit code 137).
    assert_eq!(request.msgs_modes, vec![3; 5]);
    let mut amounts: Vec<String> = request
        .msgs
        .iter()
        .map(|message| match Message::from_cell(message).unwrap().info {
            CommonMsgInfo::Int(info) => info.value.grams.amount.to_string(),
            _ => panic!("not an internal message"),
        })
        .collect();
    amounts.sort();
    assert_eq!(amounts, ["1", "2", "3", "4", "5"]);
}

#[test]
fn transfers_that_cannot_be_sent_are_refused_before_signing() {
    let wallet = wallet(TONLIB_PHRASE, WalletVersion::V4R2);
    let until = at(1_900_000_000);
    assert_eq!(
        wallet.sign_transfer(1, until, &[]),
        Err(WalletError::NoTransfers)
    );
    assert!(matches!(
        wallet.sign_transfer(1, until, &[transfer("not an address", 1, None)]),
        Err(WalletError::Destination { index: 0, .. })
    ));
    let bad_checksum = format!("{}A", &FRAGMENT_ADDRESS[..47]);
    assert!(matches!(
        wallet.sign_transfer(
            1,
            until,
            &[
                transfer(FRAGMENT_ADDRESS, 1, None),
                transfer(&bad_checksum, 1, None)
            ]
        ),
        Err(WalletError::Destination { index: 1, .. })
    ));
    assert_eq!(
        wallet.sign_transfer(1, until, &[transfer(FRAGMENT_ADDRESS, 0, None)]),
        Err(WalletError::ZeroAmount { index: 0 })
    );
    for payload in ["%%%", "aGVsbG8="] {
        assert!(matches!(
            wallet.sign_transfer(1, until, &[transfer(FRAGMENT_ADDRESS, 1, Some(payload))]),
            Err(WalletError::Payload { index: 0, .. })
        ));
    }
    for valid_until in [at(0), at(-5), at(i64::from(u32::MAX) + 1)] {
        assert_eq!(
            wallet.sign_transfer(1, valid_until, &[transfer(FRAGMENT_ADDRESS, 1, None)]),
            Err(WalletError::ValidUntil(valid_until))
        );
    }
}

#[test]
fn large_payloads_go_by_reference() {
    let wallet = wallet(TONLIB_PHRASE, WalletVersion::V4R2);
    // 127 bytes fill a cell; the header leaves less room than that.
    let long = comment_payload(&"x".repeat(123));
    let signed = wallet
        .sign_transfer(
            1,
            at(1_900_000_000),
            &[transfer(FRAGMENT_ADDRESS, 1, Some(&long))],
        )
        .unwrap();
    let external = read_external(&cell_from_base64(&signed.message));
    let (_, request) = split_v4(&external.body);
    let request = WalletExtMsgBodyV4::from_cell(&request).unwrap();
    let message = Message::from_cell(&request.msgs[0]).unwrap();
    assert_eq!(
        message.body.value.repr_hash(),
        cell_from_base64(&long).repr_hash()
    );
    assert_eq!(request.msgs[0].references().len(), 1);
}

// ---- bad phrases and secrets -----------------------------------------------------------------

#[test]
fn bad_phrases_are_refused_with_what_is_wrong() {
    let words: Vec<&str> = TONLIB_PHRASE.split_whitespace().collect();
    let short = words[..23].join(" ");
    assert_eq!(
        ShopWallet::from_seed_phrase(&phrase(&short), WalletVersion::V4R2).unwrap_err(),
        WalletError::WordCount { found: 23 }
    );
    let mut unknown = words.clone();
    unknown[4] = "zzzqqq";
    assert_eq!(
        ShopWallet::from_seed_phrase(&phrase(&unknown.join(" ")), WalletVersion::V4R2).unwrap_err(),
        WalletError::UnknownWord { position: 5 }
    );
    let mut swapped = words.clone();
    swapped.swap(0, 1);
    assert_eq!(
        ShopWallet::from_seed_phrase(&phrase(&swapped.join(" ")), WalletVersion::V4R2).unwrap_err(),
        WalletError::BadChecksum
    );
    // Spacing and case do not matter.
    let loose = format!("  {}\n", words.join("\t ").to_uppercase());
    assert_eq!(
        wallet(&loose, WalletVersion::V4R2).address(),
        wallet(TONLIB_PHRASE, WalletVersion::V4R2).address()
    );
}

#[test]
fn no_word_of_the_phrase_appears_in_errors_or_debug_output() {
    let words: Vec<&str> = TONLIB_PHRASE.split_whitespace().collect();
    let mut unknown = words.clone();
    unknown[0] = "zzzqqq";
    let mut swapped = words.clone();
    swapped.swap(2, 3);
    let mut shown = Vec::new();
    for bad in [
        words[..12].join(" "),
        unknown.join(" "),
        swapped.join(" "),
        format!("{TONLIB_PHRASE} extra"),
    ] {
        let error = ShopWallet::from_seed_phrase(&phrase(&bad), WalletVersion::V4R2).unwrap_err();
        shown.push(error.to_string());
        shown.push(format!("{error:?}"));
    }
    let wallet = wallet(TONLIB_PHRASE, WalletVersion::V4R2);
    shown.push(format!("{wallet:?}"));
    shown.push(format!("{:?}", phrase(TONLIB_PHRASE)));
    let secret_hex = hex::encode(&wallet.inner.key_pair.secret_key[..32]);
    for text in &shown {
        for word in words.iter().chain(["zzzqqq"].iter()) {
            assert!(
                !text
                    .split(|c: char| !c.is_ascii_alphabetic())
                    .any(|w| w == *word),
                "{word:?} leaked in {text:?}"
            );
        }
        assert!(!text.contains(&secret_hex), "key leaked in {text:?}");
    }
    assert!(format!("{wallet:?}").contains(&wallet.address()));
}

#[test]
fn versions_parse_from_configuration_text() {
    assert_eq!("v4r2".parse::<WalletVersion>(), Ok(WalletVersion::V4R2));
    assert_eq!(" V5R1 ".parse::<WalletVersion>(), Ok(WalletVersion::V5R1));
    assert_eq!(
        "v5r1-testnet".parse::<WalletVersion>(),
        Ok(WalletVersion::V5R1Testnet)
    );
    assert!("v3r2".parse::<WalletVersion>().is_err());
    assert_eq!(WalletVersion::default(), WalletVersion::V4R2);
    for version in [
        WalletVersion::V4R2,
        WalletVersion::V5R1,
        WalletVersion::V5R1Testnet,
    ] {
        assert_eq!(version.as_str().parse::<WalletVersion>(), Ok(version));
    }
}

#[test]
fn addresses_in_any_form_are_compared_by_account() {
    let raw = raw_form(FRAGMENT_ADDRESS).unwrap();
    assert!(raw.starts_with("0:"));
    let parsed = parse_address(FRAGMENT_ADDRESS).unwrap();
    let non_bounceable = parsed.address.to_base64_url_flags(true, false);
    let testnet = parsed.address.to_base64_std_flags(false, true);
    for form in [raw.as_str(), &non_bounceable, &testnet, &raw.to_uppercase()] {
        assert!(same_address(form, FRAGMENT_ADDRESS), "{form}");
    }
    assert!(!same_address(FRAGMENT_ADDRESS, TONWEB_V4R2_ADDRESS));
    assert!(!same_address(FRAGMENT_ADDRESS, "garbage"));
    assert_eq!(raw_form("garbage"), None);
    assert_eq!(raw_form("2:abcd"), None);
}

#[test]
fn an_empty_body_is_no_payload() {
    let empty = boc_base64(&CellBuilder::new().build().unwrap()).unwrap();
    assert_eq!(payload_from_body(&empty), Ok(None));
    let comment = comment_payload("Ref#1");
    assert_eq!(payload_from_body(&comment), Ok(Some(comment.clone())));
    assert!(payload_from_body("not base64 !").is_err());
}
