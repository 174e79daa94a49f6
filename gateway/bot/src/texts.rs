//! Every word the bot says, in Russian and English, in one place. The language comes from the
//! user's Telegram `language_code` (interactive replies) or the language stored at
//! registration (notifications).
//!
//! Money arrives here as `Decimal` and is printed with `normalize()` (no trailing zeros, never
//! through a float). Texts are plain (no parse mode), so a username or a provider's reason can
//! never break the message's markup.

use rust_decimal::Decimal;

/// The two languages the bot speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ru,
    En,
}

impl Lang {
    /// Russian for Russian-speaking locales (the shop's original audience reads Russian in
    /// Ukraine, Belarus and Kazakhstan as well), English for everyone else and when unknown.
    pub fn from_code(code: Option<&str>) -> Self {
        let primary = code
            .unwrap_or_default()
            .split(['-', '_'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match primary.as_str() {
            "ru" | "uk" | "be" | "kk" => Self::Ru,
            _ => Self::En,
        }
    }

    /// What the ledger stores as the user's language.
    pub fn code(self) -> &'static str {
        match self {
            Self::Ru => "ru",
            Self::En => "en",
        }
    }
}

/// A money amount for people: `12.5 TON`.
pub fn money(amount: Decimal, currency: &str) -> String {
    format!("{} {currency}", amount.normalize())
}

/// Who an order is for, as a phrase.
fn whom(lang: Lang, recipient: Option<&str>) -> String {
    match (lang, recipient) {
        (Lang::Ru, None) => "на ваш аккаунт".into(),
        (Lang::Ru, Some(to)) => format!("в подарок {to}"),
        (Lang::En, None) => "for your own account".into(),
        (Lang::En, Some(to)) => format!("as a gift to {to}"),
    }
}

/// Who an order is for, naming the buyer's own username when it is for them (the name the
/// Stars will go to).
fn whom_named(lang: Lang, gift: Option<&str>, own: Option<&str>) -> String {
    match (lang, gift, own) {
        (Lang::Ru, None, Some(name)) => format!("на ваш аккаунт {name}"),
        (Lang::En, None, Some(name)) => format!("for your own account, {name}"),
        _ => whom(lang, gift),
    }
}

/// One row of the history.
pub struct HistoryLine<'a> {
    pub kind: &'a str,
    pub status: &'a str,
    pub amount: Decimal,
    pub currency: &'a str,
    /// Purchases: the number of stars and the gift's recipient.
    pub stars: Option<u64>,
    pub recipient: Option<&'a str>,
    pub date: String,
}

/// Which limit a user ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    Messages,
    Operations,
    Payments,
}

/// The texts in one language.
#[derive(Debug, Clone, Copy)]
pub struct Texts(pub Lang);

impl Texts {
    fn pick(self, ru: &str, en: &str) -> String {
        match self.0 {
            Lang::Ru => ru.to_owned(),
            Lang::En => en.to_owned(),
        }
    }

    pub fn welcome(self, name: &str) -> String {
        match self.0 {
            Lang::Ru => format!(
                "Здравствуйте, {name}! Здесь можно купить Telegram Stars.\n\n\
                 Пополните баланс криптовалютой через Heleket, затем покупайте звёзды себе \
                 или в подарок любому @username. Выберите действие:"
            ),
            Lang::En => format!(
                "Hello, {name}! This bot sells Telegram Stars.\n\n\
                 Top up your balance with crypto through Heleket, then buy Stars for yourself \
                 or as a gift to any @username. What would you like to do?"
            ),
        }
    }

    pub fn help(self, currency: &str) -> String {
        match self.0 {
            Lang::Ru => format!(
                "Команды:\n\
                 /start — главное меню\n\
                 /balance — баланс\n\
                 /history — история операций\n\
                 /recharge [сумма] — пополнить баланс в {currency}\n\
                 /buy_stars [количество] [@получатель] — купить звёзды (50–1000000)\n\
                 /help — эта справка"
            ),
            Lang::En => format!(
                "Commands:\n\
                 /start — main menu\n\
                 /balance — your balance\n\
                 /history — your transactions\n\
                 /recharge [amount] — top up in {currency}\n\
                 /buy_stars [count] [@recipient] — buy Stars (50–1000000)\n\
                 /help — this help"
            ),
        }
    }

    pub fn balance(self, available: Decimal, reserved: Decimal, currency: &str) -> String {
        let (available, reserved) = (money(available, currency), money(reserved, currency));
        match self.0 {
            Lang::Ru => {
                format!("Баланс\nДоступно: {available}\nЗарезервировано под заказы: {reserved}")
            }
            Lang::En => format!("Balance\nAvailable: {available}\nReserved for orders: {reserved}"),
        }
    }

    pub fn history_title(self) -> String {
        self.pick("История операций:", "Your transactions:")
    }

    pub fn history_empty(self) -> String {
        self.pick("Операций пока нет.", "No transactions yet.")
    }

    pub fn history_line(self, line: &HistoryLine<'_>) -> String {
        let kind = match (self.0, line.kind) {
            (Lang::Ru, "recharge") => "Пополнение",
            (Lang::Ru, "purchase") => "Покупка",
            (Lang::Ru, "adjustment") => "Корректировка",
            (Lang::En, "recharge") => "Top-up",
            (Lang::En, "purchase") => "Purchase",
            (Lang::En, "adjustment") => "Adjustment",
            (_, other) => other,
        };
        let status = self.status(line.status);
        let amount = money(line.amount, line.currency);
        match (line.stars, line.recipient) {
            (Some(stars), Some(to)) => {
                format!(
                    "{} · {kind} · {stars} ⭐ → {to} · {amount} · {status}",
                    line.date
                )
            }
            (Some(stars), None) => {
                format!("{} · {kind} · {stars} ⭐ · {amount} · {status}", line.date)
            }
            _ => format!("{} · {kind} · {amount} · {status}", line.date),
        }
    }

    /// A transaction status from the read model, in words.
    pub fn status(self, status: &str) -> String {
        let word = match (self.0, status) {
            (Lang::Ru, "pending") => "ожидает оплаты",
            (Lang::Ru, "completed") => "выполнено",
            (Lang::Ru, "failed") => "не оплачено",
            (Lang::Ru, "reserved") => "средства зарезервированы",
            (Lang::Ru, "ordered" | "sent") => "заказ отправлен",
            (Lang::Ru, "refunded") => "возврат",
            (Lang::En, "pending") => "awaiting payment",
            (Lang::En, "completed") => "done",
            (Lang::En, "failed") => "not paid",
            (Lang::En, "reserved") => "funds reserved",
            (Lang::En, "ordered" | "sent") => "order sent",
            (Lang::En, "refunded") => "refunded",
            (_, other) => other,
        };
        word.to_owned()
    }

    pub fn older(self) -> String {
        self.pick("Ранее ▶", "Older ▶")
    }

    pub fn newest(self) -> String {
        self.pick("◀ Последние", "◀ Newest")
    }

    pub fn recharge_prompt(self, currency: &str) -> String {
        match self.0 {
            Lang::Ru => format!(
                "На сколько пополнить баланс ({currency})? Выберите сумму или отправьте \
                 /recharge 12.5"
            ),
            Lang::En => format!(
                "How much would you like to top up ({currency})? Pick an amount or send \
                 /recharge 12.5"
            ),
        }
    }

    pub fn ask_amount(self, currency: &str) -> String {
        match self.0 {
            Lang::Ru => format!("Отправьте сумму пополнения в {currency}, например 12.5"),
            Lang::En => format!("Send the amount to top up in {currency}, for example 12.5"),
        }
    }

    pub fn invalid_amount(self) -> String {
        self.pick(
            "Не получилось прочитать сумму. Нужно положительное число с точкой, не более 9 \
             знаков после неё, например 12.5",
            "That is not an amount I can use. Send a positive number with a dot and at most 9 \
             decimals, for example 12.5",
        )
    }

    pub fn invoice(self, amount: Decimal, currency: &str, url: &str, until: &str) -> String {
        let amount = money(amount, currency);
        match self.0 {
            Lang::Ru => format!(
                "Счёт на {amount} создан. Оплатить: {url}\nСчёт действует до {until} UTC. \
                 Баланс пополнится, как только придёт оплата — я сообщу."
            ),
            Lang::En => format!(
                "Invoice for {amount} created. Pay here: {url}\nIt is valid until {until} UTC. \
                 Your balance is credited as soon as the payment arrives — I will let you know."
            ),
        }
    }

    pub fn buy_prompt(self, recipient: Option<&str>) -> String {
        let whom = whom(self.0, recipient);
        match self.0 {
            Lang::Ru => format!("Сколько звёзд купить {whom}? Выберите или введите своё число."),
            Lang::En => {
                format!("How many Stars would you like to buy {whom}? Pick or enter a number.")
            }
        }
    }

    pub fn ask_stars(self) -> String {
        self.pick(
            "Отправьте количество звёзд: целое число от 50 до 1000000.",
            "Send the number of Stars: a whole number from 50 to 1000000.",
        )
    }

    pub fn invalid_stars(self) -> String {
        self.pick(
            "Количество звёзд — целое число от 50 до 1000000.",
            "The number of Stars must be a whole number from 50 to 1000000.",
        )
    }

    pub fn ask_recipient(self) -> String {
        self.pick(
            "Кому подарить звёзды? Отправьте @username получателя.",
            "Who gets the gift? Send the recipient's @username.",
        )
    }

    pub fn invalid_recipient(self) -> String {
        self.pick(
            "Это не похоже на имя пользователя Telegram: 4–32 латинских букв, цифр или _, \
             начинается с буквы, например @durov.",
            "That is not a Telegram username: 4–32 letters, digits or _, starting with a \
             letter, like @durov.",
        )
    }

    /// An order for the buyer's own account, and Telegram shows no username for them.
    pub fn no_username(self) -> String {
        self.pick(
            "Звёзды доставляются по имени пользователя Telegram, а у вас его нет. Задайте его в \
             настройках Telegram (Настройки → Имя пользователя) и повторите покупку — или купите \
             звёзды в подарок.",
            "Stars are delivered to a Telegram username, and you have none. Set one in \
             Telegram's settings (Settings → Username) and order again, or buy the Stars as a \
             gift.",
        )
    }

    /// `own` is the buyer's username when the order is for their own account.
    pub fn offer(
        self,
        stars: u32,
        (recipient, own): (Option<&str>, Option<&str>),
        price: Decimal,
        available: Decimal,
        currency: &str,
    ) -> String {
        let whom = whom_named(self.0, recipient, own);
        let (price, available) = (money(price, currency), money(available, currency));
        match self.0 {
            Lang::Ru => format!(
                "Покупка: {stars} ⭐ {whom}.\nЦена: {price}\nДоступно на балансе: {available}\n\
                 Подтвердите покупку."
            ),
            Lang::En => format!(
                "Order: {stars} ⭐ {whom}.\nPrice: {price}\nAvailable balance: {available}\n\
                 Please confirm."
            ),
        }
    }

    /// `own` is the username an order for the buyer's own account delivers to.
    pub fn placed(
        self,
        stars: u32,
        (recipient, own): (Option<&str>, Option<&str>),
        price: Decimal,
        available: Decimal,
        reserved: Decimal,
        currency: &str,
    ) -> String {
        let whom = whom_named(self.0, recipient, own);
        let (price, available, reserved) = (
            money(price, currency),
            money(available, currency),
            money(reserved, currency),
        );
        match self.0 {
            Lang::Ru => format!(
                "Заказ принят: {stars} ⭐ {whom}. Зарезервировано {price}.\n\
                 Доступно: {available}, зарезервировано: {reserved}.\n\
                 Сообщу, когда звёзды будут доставлены."
            ),
            Lang::En => format!(
                "Order placed: {stars} ⭐ {whom}. {price} reserved.\n\
                 Available: {available}, reserved: {reserved}.\n\
                 I will tell you when the Stars are delivered."
            ),
        }
    }

    pub fn already_placed(self, status: &str) -> String {
        let status = self.status(status);
        match self.0 {
            Lang::Ru => format!("Этот заказ уже принят (статус: {status}). Повторно не покупаю."),
            Lang::En => {
                format!("This order was already placed (status: {status}). Not buying twice.")
            }
        }
    }

    pub fn offer_expired(self) -> String {
        self.pick(
            "Это предложение больше не действует. Начните заново: /buy_stars",
            "This offer is no longer valid. Start again with /buy_stars",
        )
    }

    pub fn cancelled(self) -> String {
        self.pick("Покупка отменена.", "Order cancelled.")
    }

    pub fn insufficient_funds(self, price: Decimal, available: Decimal, currency: &str) -> String {
        let (price, available) = (money(price, currency), money(available, currency));
        match self.0 {
            Lang::Ru => format!(
                "Недостаточно средств: заказ стоит {price}, доступно {available}. \
                 Пополните баланс: /recharge"
            ),
            Lang::En => format!(
                "Not enough funds: the order costs {price}, you have {available}. \
                 Top up with /recharge"
            ),
        }
    }

    pub fn not_registered(self) -> String {
        self.pick("Сначала отправьте /start.", "Please send /start first.")
    }

    pub fn unavailable(self) -> String {
        self.pick(
            "Что-то пошло не так на нашей стороне. Попробуйте через минуту.",
            "Something went wrong on our side. Please try again in a minute.",
        )
    }

    pub fn payments_unavailable(self) -> String {
        self.pick(
            "Платёжная система сейчас недоступна. Попробуйте через несколько минут.",
            "The payment provider is unavailable right now. Please try again in a few minutes.",
        )
    }

    pub fn rate_limited(self, limited: Limited) -> String {
        match (self.0, limited) {
            (Lang::Ru, Limited::Messages) => {
                "Вы отправляете сообщения слишком часто. Подождите минуту, пожалуйста.".into()
            }
            (Lang::Ru, Limited::Operations) => {
                "Слишком много запросов за минуту. Подождите немного, пожалуйста.".into()
            }
            (Lang::Ru, Limited::Payments) => {
                "Слишком много платежей за минуту. Подождите немного и попробуйте снова.".into()
            }
            (Lang::En, Limited::Messages) => {
                "You are sending messages too fast. Please wait a minute.".into()
            }
            (Lang::En, Limited::Operations) => {
                "Too many requests in a minute. Please wait a little.".into()
            }
            (Lang::En, Limited::Payments) => {
                "Too many payments in a minute. Please wait a little and try again.".into()
            }
        }
    }

    pub fn unknown(self) -> String {
        self.pick(
            "Не понимаю. Список команд: /help",
            "I did not understand that. See /help",
        )
    }

    pub fn recharge_settled(
        self,
        credited: Decimal,
        available: Option<Decimal>,
        currency: &str,
    ) -> String {
        let credited = money(credited, currency);
        let balance = available.map(|a| money(a, currency));
        match (self.0, balance) {
            (Lang::Ru, Some(balance)) => {
                format!("✅ Оплата получена: баланс пополнен на {credited}. Доступно: {balance}.")
            }
            (Lang::Ru, None) => format!("✅ Оплата получена: баланс пополнен на {credited}."),
            (Lang::En, Some(balance)) => {
                format!(
                    "✅ Payment received: {credited} added to your balance. Available: {balance}."
                )
            }
            (Lang::En, None) => format!("✅ Payment received: {credited} added to your balance."),
        }
    }

    /// Less arrived than the invoice asked: what arrived was credited.
    pub fn recharge_partial(
        self,
        credited: Decimal,
        invoiced: Option<Decimal>,
        available: Option<Decimal>,
        currency: &str,
    ) -> String {
        let credited = money(credited, currency);
        let of = invoiced.map(|i| money(i, currency));
        let balance = available.map(|a| money(a, currency));
        let mut text = match (self.0, of) {
            (Lang::Ru, Some(of)) => format!(
                "⚠️ Оплачено меньше, чем в счёте: зачислено {credited} из {of}. \
                 Недостающее можно доплатить новым счётом: /recharge"
            ),
            (Lang::Ru, None) => format!("⚠️ Оплачено меньше, чем в счёте: зачислено {credited}."),
            (Lang::En, Some(of)) => format!(
                "⚠️ Less than the invoice was paid: {credited} of {of} added to your balance. \
                 Top up the rest with /recharge"
            ),
            (Lang::En, None) => {
                format!("⚠️ Less than the invoice was paid: {credited} added to your balance.")
            }
        };
        if let Some(balance) = balance {
            text.push_str(&match self.0 {
                Lang::Ru => format!(" Доступно: {balance}."),
                Lang::En => format!(" Available: {balance}."),
            });
        }
        text
    }

    /// The provider holds the payment for a check (AML).
    pub fn recharge_on_hold(self) -> String {
        self.pick(
            "🔎 Платёжная система проверяет ваш платёж. Баланс пополнится, когда проверка \
             закончится; мы сообщим.",
            "🔎 The payment provider is checking your payment. Your balance is topped up when \
             the check is done; we will tell you.",
        )
    }

    /// A payment arrived that a person must look at before it is credited.
    pub fn recharge_in_review(self) -> String {
        self.pick(
            "🔎 Платёж получен, но его нужно проверить вручную (например, оплачено другой \
             монетой или больше, чем в счёте). Мы зачислим его после проверки или свяжемся с вами.",
            "🔎 Your payment arrived but needs a manual check (for example it was paid in \
             another coin, or more than the invoice). We will credit it after the check or \
             contact you.",
        )
    }

    /// A credited payment went back to the payer; the credit was taken back.
    pub fn recharge_reversed(self, reversed: Decimal, debt: Decimal, currency: &str) -> String {
        let reversed = money(reversed, currency);
        let owed = money(debt, currency);
        match (self.0, debt.is_zero()) {
            (Lang::Ru, true) => format!(
                "↩️ Платёж на {reversed} возвращён вам платёжной системой, зачисление отменено."
            ),
            (Lang::Ru, false) => format!(
                "↩️ Платёж на {reversed} возвращён вам платёжной системой, зачисление отменено. \
                 Часть уже была потрачена: ваш долг {owed}. Следующее пополнение сначала \
                 погасит его; до тех пор покупки недоступны."
            ),
            (Lang::En, true) => format!(
                "↩️ Your payment of {reversed} was refunded to you by the payment provider; \
                 the credit was taken back."
            ),
            (Lang::En, false) => format!(
                "↩️ Your payment of {reversed} was refunded to you by the payment provider; \
                 the credit was taken back. Part of it was already spent: you owe {owed}. \
                 Your next top-up pays it first; until then purchases are paused."
            ),
        }
    }

    /// A purchase refused while the user owes money.
    pub fn in_debt(self, debt: Decimal, currency: &str) -> String {
        let owed = money(debt, currency);
        match self.0 {
            Lang::Ru => format!(
                "⛔ Покупки приостановлены: за вами долг {owed} после возврата платежа. \
                 Пополните баланс: /recharge"
            ),
            Lang::En => format!(
                "⛔ Purchases are paused: you owe {owed} after a refunded payment. \
                 Top up with /recharge"
            ),
        }
    }

    pub fn recharge_failed(self, amount: Option<Decimal>, currency: &str) -> String {
        let amount = amount.map(|a| money(a, currency));
        match (self.0, amount) {
            (Lang::Ru, Some(amount)) => format!(
                "❌ Счёт на {amount} не оплачен и закрыт. Баланс не изменился. \
                 Новый счёт: /recharge"
            ),
            (Lang::Ru, None) => {
                "❌ Счёт не оплачен и закрыт. Баланс не изменился. Новый счёт: /recharge".into()
            }
            (Lang::En, Some(amount)) => format!(
                "❌ The invoice for {amount} was not paid and is closed. Your balance is \
                 unchanged. New invoice: /recharge"
            ),
            (Lang::En, None) => "❌ The invoice was not paid and is closed. Your balance is \
                 unchanged. New invoice: /recharge"
                .into(),
        }
    }

    pub fn delivered(self, stars: Option<u64>, recipient: Option<&str>) -> String {
        let whom = whom(self.0, recipient);
        match (self.0, stars) {
            (Lang::Ru, Some(stars)) => format!("⭐ Доставлено: {stars} звёзд {whom}."),
            (Lang::Ru, None) => format!("⭐ Звёзды доставлены {whom}."),
            (Lang::En, Some(stars)) => format!("⭐ Delivered: {stars} Stars {whom}."),
            (Lang::En, None) => format!("⭐ Your Stars were delivered {whom}."),
        }
    }

    pub fn refunded(
        self,
        stars: Option<u64>,
        recipient: Option<&str>,
        refund: Option<Decimal>,
        available: Option<Decimal>,
        currency: &str,
    ) -> String {
        let whom = whom(self.0, recipient);
        let stars = stars.map_or_else(String::new, |s| format!("{s} ⭐ "));
        let refund = refund.map(|r| money(r, currency));
        let available = available.map(|a| money(a, currency));
        let mut text = match (self.0, refund) {
            (Lang::Ru, Some(refund)) => {
                format!("↩️ Не удалось доставить {stars}{whom}. {refund} возвращено на баланс.")
            }
            (Lang::Ru, None) => {
                format!("↩️ Не удалось доставить {stars}{whom}. Деньги возвращены на баланс.")
            }
            (Lang::En, Some(refund)) => format!(
                "↩️ We could not deliver {stars}{whom}. {refund} was returned to your balance."
            ),
            (Lang::En, None) => format!(
                "↩️ We could not deliver {stars}{whom}. The money was returned to your balance."
            ),
        };
        if let Some(available) = available {
            text.push_str(&match self.0 {
                Lang::Ru => format!(" Доступно: {available}."),
                Lang::En => format!(" Available: {available}."),
            });
        }
        text
    }

    // Buttons.

    pub fn button_balance(self) -> String {
        self.pick("💰 Баланс", "💰 Balance")
    }
    pub fn button_history(self) -> String {
        self.pick("📜 История", "📜 History")
    }
    pub fn button_recharge(self) -> String {
        self.pick("➕ Пополнить", "➕ Top up")
    }
    pub fn button_buy(self) -> String {
        self.pick("⭐ Купить звёзды", "⭐ Buy Stars")
    }
    pub fn button_help(self) -> String {
        self.pick("❓ Помощь", "❓ Help")
    }
    pub fn button_other_amount(self) -> String {
        self.pick("Другая сумма", "Other amount")
    }
    pub fn button_other_stars(self) -> String {
        self.pick("Другое количество", "Other number")
    }
    pub fn button_gift(self) -> String {
        self.pick("🎁 В подарок", "🎁 As a gift")
    }
    pub fn button_for_me(self) -> String {
        self.pick("Себе", "For me")
    }
    pub fn button_confirm(self) -> String {
        self.pick("✅ Подтвердить", "✅ Confirm")
    }
    pub fn button_cancel(self) -> String {
        self.pick("Отмена", "Cancel")
    }
    pub fn button_pay(self) -> String {
        self.pick("💳 Оплатить", "💳 Pay")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_follow_the_telegram_code() {
        assert_eq!(Lang::from_code(Some("ru")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("uk-UA")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("en-GB")), Lang::En);
        assert_eq!(Lang::from_code(Some("de")), Lang::En);
        assert_eq!(Lang::from_code(None), Lang::En);
    }

    #[test]
    fn money_is_printed_from_decimals_without_trailing_zeros() {
        let amount: Decimal = "9.505000000".parse().unwrap();
        assert_eq!(money(amount, "TON"), "9.505 TON");
        assert_eq!(money(Decimal::ZERO, "TON"), "0 TON");
        // Far past f64's exact range: printed digit for digit.
        let exact: Decimal = "123456789.123456789".parse().unwrap();
        assert_eq!(money(exact, "TON"), "123456789.123456789 TON");
    }

    #[test]
    fn both_languages_say_the_same_numbers() {
        let price: Decimal = "0.495".parse().unwrap();
        let available: Decimal = "9.505".parse().unwrap();
        for lang in [Lang::Ru, Lang::En] {
            let text = Texts(lang).offer(100, (Some("@friend_01"), None), price, available, "TON");
            assert!(
                text.contains("100") && text.contains("@friend_01"),
                "{text}"
            );
            // An order for the buyer's own account names the username the Stars go to.
            let own = Texts(lang).offer(100, (None, Some("@me_now")), price, available, "TON");
            assert!(own.contains("@me_now"), "{own}");
            assert!(
                text.contains("0.495 TON") && text.contains("9.505 TON"),
                "{text}"
            );
        }
        assert_ne!(Texts(Lang::Ru).cancelled(), Texts(Lang::En).cancelled());
    }
}
