//! The slash commands a user can type, parsed from message text into values the flows can
//! trust: amounts, star counts and usernames are the ledger's own newtypes, checked here.

use starledger_ledger::events::Stars;
use starledger_ledger::ids::Username;
use starledger_ledger::money::Amount;

/// A command and its parsed arguments. A malformed argument is kept as an `Err` so the reply
/// can say exactly what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start,
    Balance,
    History,
    Help,
    /// `/recharge [amount]`.
    Recharge(Option<Result<Amount, Bad>>),
    /// `/buy_stars [count] [@recipient]`, in either order.
    BuyStars {
        stars: Option<Result<Stars, Bad>>,
        recipient: Option<Result<Username, Bad>>,
    },
    Unknown,
}

/// An argument that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bad;

/// Reads a message. `None` when it is not a command (plain text); `bot_username` lets
/// `/balance@our_bot` through and ignores commands addressed to another bot.
pub fn parse(text: &str, bot_username: &str) -> Option<Command> {
    let text = text.trim();
    let rest = text.strip_prefix('/')?;
    let mut words = rest.split_whitespace();
    let head = words.next().unwrap_or_default();
    let (name, addressee) = head.split_once('@').unwrap_or((head, ""));
    if !addressee.is_empty() && !addressee.eq_ignore_ascii_case(bot_username) {
        return None;
    }
    let args: Vec<&str> = words.collect();
    let command = match name.to_ascii_lowercase().as_str() {
        "start" => Command::Start,
        "balance" => Command::Balance,
        "history" => Command::History,
        "help" => Command::Help,
        "recharge" => Command::Recharge(args.first().map(|a| amount(a))),
        "buy_stars" | "buystars" | "buy" => {
            let mut stars = None;
            let mut recipient = None;
            for arg in args.iter().take(2) {
                if arg.starts_with('@') || arg.starts_with(|c: char| c.is_ascii_alphabetic()) {
                    recipient = Some(Username::parse(arg).map_err(|_| Bad));
                } else {
                    stars = Some(stars_count(arg));
                }
            }
            Command::BuyStars { stars, recipient }
        }
        _ => Command::Unknown,
    };
    Some(command)
}

/// An amount as people type it: `12.5`, also with a decimal comma (`12,5`).
pub fn amount(text: &str) -> Result<Amount, Bad> {
    Amount::parse(&text.trim().replace(',', ".")).map_err(|_| Bad)
}

/// A number of stars: a whole number within Fragment's order limits.
pub fn stars_count(text: &str) -> Result<Stars, Bad> {
    let count: i64 = text.trim().parse().map_err(|_| Bad)?;
    Stars::new(count).map_err(|_| Bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_their_arguments() {
        assert_eq!(parse("/start", "shop_bot"), Some(Command::Start));
        assert_eq!(
            parse("/balance@shop_bot", "shop_bot"),
            Some(Command::Balance)
        );
        assert_eq!(parse("/balance@other_bot", "shop_bot"), None);
        assert_eq!(parse("hello", "shop_bot"), None);
        assert_eq!(
            parse("/recharge 12,5", "shop_bot"),
            Some(Command::Recharge(Some(Ok(Amount::parse("12.5").unwrap()))))
        );
        assert_eq!(
            parse("/recharge -1", "shop_bot"),
            Some(Command::Recharge(Some(Err(Bad))))
        );
        assert_eq!(
            parse("/recharge", "shop_bot"),
            Some(Command::Recharge(None))
        );
        assert_eq!(
            parse("/buy_stars 100 @friend_01", "shop_bot"),
            Some(Command::BuyStars {
                stars: Some(Ok(Stars::new(100).unwrap())),
                recipient: Some(Ok(Username::parse("friend_01").unwrap())),
            })
        );
        assert_eq!(
            parse("/buy_stars @friend_01 49", "shop_bot"),
            Some(Command::BuyStars {
                stars: Some(Err(Bad)),
                recipient: Some(Ok(Username::parse("friend_01").unwrap())),
            })
        );
        assert_eq!(
            parse("/buy_stars @x", "shop_bot"),
            Some(Command::BuyStars {
                stars: None,
                recipient: Some(Err(Bad)),
            })
        );
        assert_eq!(parse("/nope", "shop_bot"), Some(Command::Unknown));
    }

    #[test]
    fn star_counts_are_whole_and_within_fragment_limits() {
        assert!(stars_count("50").is_ok());
        assert!(stars_count("1000000").is_ok());
        for bad in ["49", "1000001", "1.5", "-100", "1e3", ""] {
            assert_eq!(stars_count(bad), Err(Bad), "{bad:?}");
        }
    }
}
