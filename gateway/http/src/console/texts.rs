//! Every word the console shows, in English and Russian (the bot's languages). One line per
//! text, both languages side by side, so a text cannot exist in one language only: the macro
//! builds the two tables from the same list and the compiler refuses a missing one.

/// A language of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ru,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ru];

    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "en" => Some(Self::En),
            "ru" => Some(Self::Ru),
            _ => None,
        }
    }

    /// The first of `en` and `ru` an `Accept-Language` header names (ignoring weights, as
    /// browsers list languages in order of preference).
    pub fn from_accept_language(header: &str) -> Self {
        header
            .split(',')
            .filter_map(|part| part.split(';').next())
            .map(|tag| tag.trim().to_ascii_lowercase())
            .find_map(|tag| Lang::parse(tag.split('-').next().unwrap_or_default()))
            .unwrap_or(Self::En)
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Ru => "ru",
        }
    }

    /// The language's name in itself, for the switch.
    pub fn label(self) -> &'static str {
        match self {
            Self::En => "English",
            Self::Ru => "Русский",
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Self::En => &EN,
            Self::Ru => &RU,
        }
    }
}

macro_rules! texts {
    ($($key:ident: $en:literal, $ru:literal;)*) => {
        /// The console's texts in one language.
        pub struct Texts {
            $(pub $key: &'static str,)*
        }
        pub static EN: Texts = Texts { $($key: $en,)* };
        pub static RU: Texts = Texts { $($key: $ru,)* };

        impl Texts {
            /// Every text, with its name.
            #[cfg(test)]
            fn all(&self) -> Vec<(&'static str, &'static str)> {
                vec![$((stringify!($key), self.$key),)*]
            }
        }
    };
}

texts! {
    // The shell.
    overview: "Overview", "Обзор";
    users: "Users", "Пользователи";
    purchases: "Purchases", "Покупки";
    projections: "Projections", "Проекции";
    audit: "Audit", "Аудит";
    event_log: "Event log", "Журнал событий";
    sign_out: "Sign out", "Выйти";
    role_admin: "admin", "администратор";
    role_auditor: "auditor (read-only)", "аудитор (только чтение)";
    read_only: "You are signed in as an auditor: you can see everything and change nothing.", "Вы вошли как аудитор: вам видно всё, но изменить ничего нельзя.";
    error_title: "Error", "Ошибка";
    back_to_console: "Back to the console", "Вернуться в консоль";
    no_page: "There is no such page.", "Такой страницы нет.";
    bad_input: "The request could not be read", "Не удалось прочитать запрос";
    forbidden: "Auditors may not do this: the console is read-only for them.", "Аудиторам это запрещено: для них консоль только для чтения.";
    csrf_refused: "The form was refused: its security token is missing or stale. Reload the page and try again.", "Форма отклонена: её токен безопасности отсутствует или устарел. Обновите страницу и попробуйте снова.";
    session_over: "Your session is over. Sign in again.", "Сеанс завершён. Войдите снова.";
    // Sign-in.
    sign_in_title: "Sign in to the console", "Вход в консоль";
    key_label: "Admin or auditor API key", "API-ключ администратора или аудитора";
    key_hint: "The key from STARLEDGER_API_KEYS. The service key cannot sign in.", "Ключ из STARLEDGER_API_KEYS. Сервисным ключом войти нельзя.";
    sign_in: "Sign in", "Войти";
    bad_key: "Unknown key.", "Неизвестный ключ.";
    service_key_refused: "The service key cannot sign in to the console; use an admin or auditor key.", "Сервисным ключом в консоль не войти; используйте ключ администратора или аудитора.";
    sign_in_throttled: "Too many attempts from this address. Wait a minute.", "Слишком много попыток с этого адреса. Подождите минуту.";
    // Overview.
    log_head: "Log head", "Голова журнала";
    events_last_minute: "Events in the last minute", "Событий за последнюю минуту";
    events_per_minute_hour: "Events per minute, last hour", "Событий в минуту за последний час";
    log_unavailable: "The event log does not answer.", "Журнал событий не отвечает.";
    health: "Health", "Состояние";
    database: "Database", "База данных";
    ok: "ok", "в порядке";
    unavailable: "unavailable", "недоступно";
    not_configured: "not configured", "не настроен";
    breakers: "Circuit breakers", "Предохранители";
    breaker_open: "open", "разомкнут";
    breaker_closed: "closed", "замкнут";
    open_purchases: "Open purchases", "Открытые покупки";
    recharges_review: "Recharges waiting for an operator", "Пополнения, ждущие оператора";
    webhooks_last_hour: "Webhooks, last hour", "Вебхуки за последний час";
    this_instance: "As this instance answered them.", "Как их принял этот экземпляр.";
    projectors: "Projectors and reactors", "Проекторы и реакторы";
    name: "Name", "Имя";
    checkpoint: "Checkpoint", "Контрольная точка";
    lag_events: "Lag, events", "Отставание, событий";
    lag_seconds: "Lag, s", "Отставание, с";
    updated: "Updated", "Обновлено";
    never: "never", "никогда";
    none: "None.", "Нет.";
    // Users.
    find_user: "User id or @username", "Id пользователя или @username";
    find: "Find", "Найти";
    no_user: "No such user.", "Такого пользователя нет.";
    several_users: "Several users had this name:", "Это имя было у нескольких пользователей:";
    user_title: "User", "Пользователь";
    profile: "Profile", "Профиль";
    user_id: "Id", "Id";
    username: "Username", "Имя пользователя";
    language: "Language", "Язык";
    currency: "Currency", "Валюта";
    registered: "Registered", "Регистрация";
    balance: "Balance", "Баланс";
    available: "Available", "Доступно";
    reserved: "Reserved", "Зарезервировано";
    total: "Total", "Всего";
    debt: "Debt", "Долг";
    balance_at: "Balance at a moment", "Баланс на момент";
    moment: "Moment (UTC)", "Момент (UTC)";
    show: "Show", "Показать";
    invalid_moment: "Give a time such as 2026-12-01T12:00:00Z.", "Укажите время, например 2026-12-01T12:00:00Z.";
    history: "History", "История";
    created: "Created", "Создано";
    kind: "Type", "Тип";
    status: "Status", "Статус";
    amount: "Amount", "Сумма";
    description: "Description", "Описание";
    newest: "Newest", "Новые";
    older: "Older", "Старше";
    newer: "Newer", "Новее";
    user_events: "Events", "События";
    all_in_event_log: "All of them in the event log", "Все в журнале событий";
    // Purchases.
    purchases_hint: "Reserved, ordered at Fragment or paid (sent), oldest first. Each decision is recorded in the ledger with your key's name.", "Зарезервированные, заказанные во Fragment или оплаченные (sent), старые сначала. Каждое решение записывается в журнал с именем вашего ключа.";
    none_open: "No open purchases.", "Открытых покупок нет.";
    user: "User", "Пользователь";
    purchase: "Purchase", "Покупка";
    stars: "Stars", "Звёзды";
    recipient: "Recipient", "Получатель";
    price: "Price", "Цена";
    actions: "Actions", "Действия";
    deliver: "Mark delivered", "Отметить доставленным";
    fail: "Fail", "Отменить";
    no_purchase: "No such purchase.", "Такой покупки нет.";
    delivered: "Marked delivered:", "Отмечено доставленным:";
    failed: "Failed, reservation released:", "Отменено, резерв снят:";
    fail_title: "Fail a purchase", "Отмена покупки";
    paid_warning: "A payment to Fragment is recorded for this order: the Stars may have been delivered. Fail it only after checking on chain and with Fragment, and tick force.", "По этому заказу записан платёж во Fragment: звёзды могли быть доставлены. Отменяйте только после проверки в блокчейне и во Fragment, отметив «принудительно».";
    reason: "Reason (recorded with your name)", "Причина (записывается с вашим именем)";
    reason_required: "A reason is required.", "Нужна причина.";
    force_label: "Force: I checked on chain and with Fragment that these Stars were not delivered.", "Принудительно: я проверил в блокчейне и во Fragment, что звёзды не доставлены.";
    force_hint: "Needed once a payment to Fragment is recorded; the ledger refuses without it.", "Нужно, если платёж во Fragment уже записан; без этого журнал откажет.";
    force_needed: "The ledger refused: a payment is recorded for this order. Tick force if you have checked.", "Журнал отказал: по заказу записан платёж. Отметьте «принудительно», если проверили.";
    confirm_fail: "Fail and release the reservation", "Отменить и снять резерв";
    cancel: "Cancel", "Назад";
    // Projections.
    rebuild: "Rebuild", "Перестроение";
    rebuild_hint: "Blue/green: the tables are replayed from the log into new ones and swapped in when caught up; reads go on meanwhile.", "Blue/green: таблицы заново строятся из журнала в новые и подменяются, когда догонят; чтение при этом продолжается.";
    rebuild_which: "Tables", "Таблицы";
    all_tables: "all", "все";
    start_rebuild: "Start the rebuild", "Начать перестроение";
    rebuild_started: "Rebuild started.", "Перестроение начато.";
    unknown_projection: "No such projection.", "Такой проекции нет.";
    last_rebuild: "Last rebuild", "Последнее перестроение";
    started_by: "started by", "запустил";
    events: "events", "событий";
    events_replayed: "Events replayed", "Воспроизведено событий";
    refresh: "Refresh", "Обновить";
    // Audit.
    verify: "Verify the ledger", "Проверка журнала";
    verify_hint: "Hash chain, postings, invariants, trial balance and, with every table, each read model against a fresh replay.", "Цепочка хешей, проводки, инварианты, оборотная ведомость и, со всеми таблицами, каждая проекция против нового воспроизведения.";
    scope: "Scope", "Охват";
    scope_all: "the log and every table", "журнал и все таблицы";
    scope_log: "the log alone", "только журнал";
    start_verify: "Verify", "Проверить";
    balances_at_all: "Every balance at a moment", "Все балансы на момент";
    start_balances: "Compute", "Рассчитать";
    export: "Export the log (NDJSON)", "Выгрузка журнала (NDJSON)";
    export_hint: "Events after the first position up to the second, with their hashes, one JSON object per line.", "События после первой позиции до второй, с хешами, по объекту JSON в строке.";
    after_position: "After position", "После позиции";
    up_to_position: "Up to position", "До позиции";
    download: "Download", "Скачать";
    invalid_range: "The range is not a range of the log.", "Диапазон не из журнала.";
    audit_started: "Audit job started.", "Задание аудита запущено.";
    no_audit_job: "No audit job has run on this instance yet.", "На этом экземпляре ещё не было заданий аудита.";
    last_audit_job: "Last audit job", "Последнее задание аудита";
    sound: "Sound: every check passed.", "Журнал в порядке: все проверки пройдены.";
    unsound: "NOT sound: see the findings and differences.", "НЕ в порядке: см. находки и расхождения.";
    head_hash: "Head hash", "Хеш головы";
    elapsed: "Took", "Заняло";
    trial_balance: "Trial balance (zero in a sound ledger)", "Оборотная ведомость (ноль в исправном журнале)";
    findings: "Findings", "Находки";
    tables: "Tables against the replay", "Таблицы против воспроизведения";
    tables_not_checked: "Not checked (the log alone).", "Не проверялись (только журнал).";
    differences: "Differences", "Расхождения";
    key: "Key", "Ключ";
    expected: "Replay says", "По воспроизведению";
    found: "Table holds", "В таблице";
    previous: "Previous", "Назад";
    next: "Next", "Дальше";
    // Event log.
    event: "Event", "Событие";
    position: "Position", "Позиция";
    stream: "Stream", "Поток";
    actor: "Actor", "Автор";
    time: "Time", "Время";
    hash: "Hash", "Хеш";
    payload: "Payload", "Данные";
    metadata: "Metadata", "Метаданные";
    first: "First", "В начало";
    verify_hash: "verify", "проверить";
    invalid_stream: "A stream is account-N.", "Поток имеет вид account-N.";
    no_event: "No event at this position.", "На этой позиции нет события.";
    hash_matches: "The hash recomputed from the stored fields matches the stored hash.", "Хеш, вычисленный заново по сохранённым полям, совпадает с сохранённым.";
    hash_differs: "The hash recomputed from the stored fields DIFFERS from the stored hash; recomputed:", "Хеш, вычисленный заново по сохранённым полям, НЕ совпадает с сохранённым; вычисленный:";
    link_matches: "prev_hash is the hash of the event before it.", "prev_hash равен хешу предыдущего события.";
    link_differs: "prev_hash is NOT the hash of the event before it.", "prev_hash НЕ равен хешу предыдущего события.";
}

#[cfg(test)]
mod tests {
    use super::Lang;

    #[test]
    fn the_language_comes_from_the_browsers_first_known_preference() {
        assert_eq!(
            Lang::from_accept_language("ru-RU,ru;q=0.9,en;q=0.8"),
            Lang::Ru
        );
        assert_eq!(
            Lang::from_accept_language("de-DE, en-GB;q=0.7, ru;q=0.5"),
            Lang::En
        );
        assert_eq!(Lang::from_accept_language("fr"), Lang::En);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
    }

    #[test]
    fn every_text_is_given_in_both_languages() {
        // A text missing from one language does not compile; an empty one is caught here.
        for lang in Lang::ALL {
            for (name, text) in lang.texts().all() {
                assert!(!text.trim().is_empty(), "{lang:?} {name} is empty");
            }
        }
        // Russian texts are Russian (a copied English one would be all ASCII), but for the
        // few that are the same words or names in both.
        let same: Vec<_> = super::EN
            .all()
            .into_iter()
            .zip(super::RU.all())
            .filter(|((_, en), (_, ru))| en == ru)
            .map(|((name, _), _)| name)
            .collect();
        assert_eq!(same, ["user_id"]);
    }
}
