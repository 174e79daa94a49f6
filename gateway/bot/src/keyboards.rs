//! Inline keyboards and the data their buttons carry back.
//!
//! A button's `callback_data` is at most 64 bytes that come back to us in a callback query;
//! they are outside input like any message (an old message, another client), so they are
//! parsed into an [`Action`] here and anything else is ignored. Each action carries what it
//! needs (the amount, the recipient), so an old button still means what it said when it was
//! shown; the one exception is the confirm button, which names an offer kept in the session.

use starledger_ledger::events::Stars;
use starledger_ledger::ids::Username;
use starledger_ledger::money::Amount;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

use super::texts::Texts;

/// Stars presets offered by `/buy_stars` (the seed's).
pub const STAR_PRESETS: [u32; 5] = [50, 100, 250, 500, 1000];
/// Top-up presets, in the ledger currency.
pub const RECHARGE_PRESETS: [&str; 4] = ["1", "5", "10", "25"];
/// History rows per page.
pub const HISTORY_PAGE: u32 = 5;

/// What a pressed button asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Balance,
    /// A history page: the newest (`None`) or the one before a cursor.
    History(Option<u64>),
    RechargeMenu,
    Recharge(Amount),
    RechargeOther,
    /// The Stars menu, for the user or as a gift.
    BuyMenu(Option<Username>),
    /// A preset number of stars for the user or a recipient: makes an offer.
    Stars(Stars, Option<Username>),
    StarsOther(Option<Username>),
    /// Asks for a gift's recipient.
    Gift,
    Help,
    Confirm(u64),
    Cancel(u64),
}

impl Action {
    /// The button data; always within Telegram's 64 bytes (a username is at most 32).
    pub fn encode(&self) -> String {
        let name = |r: &Option<Username>| r.as_ref().map_or("", |r| r.as_str()).to_owned();
        match self {
            Self::Balance => "bal".into(),
            Self::History(None) => "h".into(),
            Self::History(Some(cursor)) => format!("h:{cursor}"),
            Self::RechargeMenu => "rc".into(),
            Self::Recharge(amount) => format!("rc:{amount}"),
            Self::RechargeOther => "rc:other".into(),
            Self::BuyMenu(recipient) => format!("buy:{}", name(recipient)),
            Self::Stars(stars, recipient) => format!("st:{}:{}", stars.get(), name(recipient)),
            Self::StarsOther(recipient) => format!("st:other:{}", name(recipient)),
            Self::Gift => "gift".into(),
            Self::Help => "help".into(),
            Self::Confirm(token) => format!("ok:{token}"),
            Self::Cancel(token) => format!("no:{token}"),
        }
    }

    /// Reads button data; `None` for anything we never put on a button.
    pub fn parse(data: &str) -> Option<Self> {
        let recipient = |name: &str| -> Option<Option<Username>> {
            if name.is_empty() {
                Some(None)
            } else {
                Username::parse(name).ok().map(Some)
            }
        };
        let (head, rest) = data.split_once(':').unwrap_or((data, ""));
        let action = match (head, rest) {
            ("bal", "") => Self::Balance,
            ("h", "") => Self::History(None),
            ("h", cursor) => Self::History(Some(cursor.parse().ok()?)),
            ("rc", "") => Self::RechargeMenu,
            ("rc", "other") => Self::RechargeOther,
            ("rc", amount) => Self::Recharge(Amount::parse(amount).ok()?),
            ("buy", name) => Self::BuyMenu(recipient(name)?),
            ("st", rest) => {
                let (count, name) = rest.split_once(':')?;
                let to = recipient(name)?;
                if count == "other" {
                    Self::StarsOther(to)
                } else {
                    Self::Stars(Stars::new(count.parse().ok()?).ok()?, to)
                }
            }
            ("gift", "") => Self::Gift,
            ("help", "") => Self::Help,
            ("ok", token) => Self::Confirm(token.parse().ok()?),
            ("no", token) => Self::Cancel(token.parse().ok()?),
            _ => return None,
        };
        Some(action)
    }
}

fn button(text: String, action: &Action) -> InlineKeyboardButton {
    InlineKeyboardButton::callback(text, action.encode())
}

/// The main menu under `/start` and `/help`.
pub fn main_menu(texts: Texts) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(vec![
        vec![
            button(texts.button_balance(), &Action::Balance),
            button(texts.button_history(), &Action::History(None)),
        ],
        vec![
            button(texts.button_recharge(), &Action::RechargeMenu),
            button(texts.button_buy(), &Action::BuyMenu(None)),
        ],
        vec![button(texts.button_help(), &Action::Help)],
    ])
}

pub fn recharge_menu(texts: Texts, currency: &str) -> InlineKeyboardMarkup {
    let presets = RECHARGE_PRESETS
        .iter()
        .filter_map(|text| Amount::parse(text).ok())
        .map(|amount| button(format!("{amount} {currency}"), &Action::Recharge(amount)))
        .collect();
    InlineKeyboardMarkup::new(vec![
        presets,
        vec![button(texts.button_other_amount(), &Action::RechargeOther)],
    ])
}

pub fn buy_menu(texts: Texts, recipient: Option<&Username>) -> InlineKeyboardMarkup {
    let presets = STAR_PRESETS
        .iter()
        .filter_map(|n| Stars::new(i64::from(*n)).ok())
        .map(|stars| {
            button(
                format!("{} ⭐", stars.get()),
                &Action::Stars(stars, recipient.cloned()),
            )
        })
        .collect();
    let whom = match recipient {
        None => button(texts.button_gift(), &Action::Gift),
        Some(_) => button(texts.button_for_me(), &Action::BuyMenu(None)),
    };
    InlineKeyboardMarkup::new(vec![
        presets,
        vec![
            button(
                texts.button_other_stars(),
                &Action::StarsOther(recipient.cloned()),
            ),
            whom,
        ],
    ])
}

/// For a buyer without a username: buying as a gift is the way on.
pub fn gift_instead(texts: Texts) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(vec![vec![button(texts.button_gift(), &Action::Gift)]])
}

pub fn confirm(texts: Texts, token: u64) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(vec![vec![
        button(texts.button_confirm(), &Action::Confirm(token)),
        button(texts.button_cancel(), &Action::Cancel(token)),
    ]])
}

/// The payment button under an invoice (only when the URL parses; the link is in the text
/// anyway).
pub fn pay(texts: Texts, url: &str) -> Option<InlineKeyboardMarkup> {
    let url = reqwest::Url::parse(url).ok()?;
    Some(InlineKeyboardMarkup::new(vec![vec![
        InlineKeyboardButton::url(texts.button_pay(), url),
    ]]))
}

/// Paging under a history page.
pub fn history(texts: Texts, first_page: bool, next: Option<u64>) -> InlineKeyboardMarkup {
    let mut row = Vec::new();
    if !first_page {
        row.push(button(texts.newest(), &Action::History(None)));
    }
    if let Some(cursor) = next {
        row.push(button(texts.older(), &Action::History(Some(cursor))));
    }
    InlineKeyboardMarkup::new(if row.is_empty() { vec![] } else { vec![row] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_round_trips_within_64_bytes() {
        let longest = Username::parse(&format!("a{}", "b".repeat(31))).unwrap();
        let actions = [
            Action::Balance,
            Action::History(None),
            Action::History(Some(u64::MAX)),
            Action::RechargeMenu,
            Action::Recharge(Amount::parse("999999999.123456789").unwrap()),
            Action::RechargeOther,
            Action::BuyMenu(None),
            Action::BuyMenu(Some(longest.clone())),
            Action::Stars(Stars::new(1_000_000).unwrap(), Some(longest.clone())),
            Action::Stars(Stars::new(50).unwrap(), None),
            Action::StarsOther(Some(longest)),
            Action::StarsOther(None),
            Action::Gift,
            Action::Help,
            Action::Confirm(u64::MAX),
            Action::Cancel(0),
        ];
        for action in actions {
            let data = action.encode();
            assert!(data.len() <= 64, "{data} is {} bytes", data.len());
            assert_eq!(Action::parse(&data), Some(action), "{data}");
        }
    }

    #[test]
    fn foreign_button_data_is_ignored() {
        for data in [
            "",
            "x",
            "rc:-5",
            "rc:1e3",
            "st:49:",
            "st:100",
            "st:100:bad name",
            "ok:",
            "ok:-1",
            "h:abc",
            "bal:extra",
            "buy:@@",
        ] {
            assert_eq!(Action::parse(data), None, "{data:?}");
        }
    }
}
