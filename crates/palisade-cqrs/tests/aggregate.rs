//! The given/when/then harness on the bank account.

#[path = "../examples/bank/account.rs"]
mod account;

use account::{Account, AccountCommand, AccountError, AccountEvent};
use palisade_cqrs::harness::given;

fn opened() -> AccountEvent {
    AccountEvent::Opened {
        owner: "Alice".into(),
    }
}

#[test]
fn opening_a_new_account() {
    given::<Account>([])
        .when(AccountCommand::Open {
            owner: "Alice".into(),
        })
        .then_events([opened()]);
}

#[test]
fn an_account_opens_once() {
    given::<Account>([opened()])
        .when(AccountCommand::Open {
            owner: "Bob".into(),
        })
        .then_error(AccountError::AlreadyOpen);
}

#[test]
fn deposits_and_withdrawals_fold_into_the_balance() {
    let state = given::<Account>([opened(), AccountEvent::Deposited { cents: 100 }])
        .when(AccountCommand::Withdraw { cents: 30 })
        .then_events([AccountEvent::Withdrawn { cents: 30 }]);
    assert_eq!(state.balance, 70);
    given::<Account>([opened()])
        .when(AccountCommand::Deposit { cents: 5 })
        .then_events([AccountEvent::Deposited { cents: 5 }]);
}

#[test]
fn an_overdraft_is_refused_with_the_balance() {
    given::<Account>([
        opened(),
        AccountEvent::Deposited { cents: 100 },
        AccountEvent::Withdrawn { cents: 30 },
    ])
    .when(AccountCommand::Withdraw { cents: 71 })
    .then_error(AccountError::Overdraft {
        balance: 70,
        requested: 71,
    });
}

#[test]
fn amounts_are_positive_and_the_account_open() {
    given::<Account>([opened()])
        .when(AccountCommand::Deposit { cents: -5 })
        .then_error_matches(|e| matches!(e, AccountError::InvalidAmount { cents: -5 }));
    given::<Account>([])
        .when(AccountCommand::Deposit { cents: 5 })
        .then_error(AccountError::NotOpen);
}

#[test]
#[should_panic(expected = "the command decided other events")]
fn the_harness_fails_on_other_events() {
    given::<Account>([opened()])
        .when(AccountCommand::Deposit { cents: 5 })
        .then_events([AccountEvent::Deposited { cents: 6 }]);
}

#[test]
#[should_panic(expected = "the command was refused")]
fn the_harness_fails_on_an_unexpected_refusal() {
    given::<Account>([])
        .when(AccountCommand::Deposit { cents: 5 })
        .then_events([AccountEvent::Deposited { cents: 5 }]);
}
