//! The bank-account domain's C surface.

use super::args::{opt_str_arg, str_arg, write_opt};
use super::extensible::{extensible, out_struct};
use super::status::*;
use super::store::{evs_store, store_arg};
use crate::account::{Account, Bank};
use crate::error::Result;
use std::ffi::c_char;

/// An account as its events leave it (caller-allocated: set `struct_size`, see
/// `EVS_STRUCT_INIT`).
#[repr(C)]
pub struct evs_account {
    /// sizeof(evs_account) as the caller's header has it; the library never changes it.
    pub struct_size: usize,
    pub balance: i64,
    pub is_closed: bool,
    /// Three letters, NUL-terminated ("USD").
    pub currency: [c_char; 4],
    /// Events applied to this account.
    pub version: u64,
    /// Position of its last event.
    pub last_position: u64,
}

extensible!(evs_account, balance);

fn to_c(a: &Account) -> evs_account {
    let mut currency = [0 as c_char; 4];
    for (d, s) in currency.iter_mut().zip(a.currency.bytes().take(3)) {
        *d = s as c_char;
    }
    evs_account {
        struct_size: std::mem::size_of::<evs_account>(),
        balance: a.balance,
        is_closed: a.is_closed,
        currency,
        version: a.version,
        last_position: a.last_position,
    }
}

/// The body of every single-account write: check the store and the id, run `op`, and
/// report its position through the optional out-pointer.
///
/// # Safety
/// `s` is NULL or a live store; `account_id` is NULL or a NUL-terminated string.
unsafe fn account_write(
    s: *mut evs_store,
    account_id: *const c_char,
    out_position: *mut u64,
    op: impl FnOnce(&Bank, &str) -> Result<u64>,
) -> evs_status {
    boundary(|| {
        // SAFETY: forwarded from the caller's contract.
        let store = unsafe { store_arg(s) }?;
        let id = unsafe { str_arg(account_id, "account_id") }?;
        let p = op(&store.bank, id)?;
        write_opt(out_position, p);
        Ok(EVS_OK)
    })
}

/// Opens account `account_id` (1..=256 bytes of UTF-8) with `initial_balance` (>= 0) in
/// `currency` (three upper-case letters; NULL: "USD"). `*out_position` may be NULL.
///
/// Thread safety: any thread. Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL store or id,
/// bad UTF-8, empty or long id, negative balance, bad currency); EVS_ERR_ALREADY_EXISTS
/// (the account exists); EVS_ERR_WRONG_EXPECTED_VERSION (its stream was created
/// meanwhile by another writer: another process on PostgreSQL, or an `evs_append` to
/// `account-<id>`); EVS_ERR_READ_ONLY; EVS_ERR_IO.
/// Ownership: the strings stay the caller's. Out-pointers are written only on success.
#[no_mangle]
pub unsafe extern "C" fn evs_account_open(
    s: *mut evs_store,
    account_id: *const c_char,
    initial_balance: i64,
    currency: *const c_char,
    out_position: *mut u64,
) -> evs_status {
    let open = |bank: &Bank, id: &str| {
        // SAFETY: `currency` is NULL or a NUL-terminated string (C API contract).
        let currency = unsafe { opt_str_arg(currency, "currency") }?;
        bank.open_account(id, initial_balance, currency)
    };
    // SAFETY: forwarded C API contract.
    unsafe { account_write(s, account_id, out_position, open) }
}

/// Deposits `amount` (> 0). `*out_position` may be NULL.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT; EVS_ERR_NOT_FOUND; EVS_ERR_ACCOUNT_CLOSED;
/// EVS_ERR_OVERFLOW; EVS_ERR_WRONG_EXPECTED_VERSION (another writer appended to the
/// account's stream meanwhile: nothing written, try again); EVS_ERR_READ_ONLY;
/// EVS_ERR_IO. Thread safety: any thread.
/// Ownership: `account_id` stays the caller's.
#[no_mangle]
pub unsafe extern "C" fn evs_account_deposit(
    s: *mut evs_store,
    account_id: *const c_char,
    amount: i64,
    out_position: *mut u64,
) -> evs_status {
    // SAFETY: forwarded C API contract.
    unsafe {
        account_write(s, account_id, out_position, |bank, id| {
            bank.deposit(id, amount)
        })
    }
}

/// Withdraws `amount` (> 0) if the balance covers it. `*out_position` may be NULL.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT; EVS_ERR_NOT_FOUND; EVS_ERR_ACCOUNT_CLOSED;
/// EVS_ERR_INSUFFICIENT_FUNDS; EVS_ERR_WRONG_EXPECTED_VERSION (as for
/// `evs_account_deposit`); EVS_ERR_READ_ONLY; EVS_ERR_IO. Thread safety: any thread.
/// Ownership: `account_id` stays the caller's.
#[no_mangle]
pub unsafe extern "C" fn evs_account_withdraw(
    s: *mut evs_store,
    account_id: *const c_char,
    amount: i64,
    out_position: *mut u64,
) -> evs_status {
    // SAFETY: forwarded C API contract.
    unsafe {
        account_write(s, account_id, out_position, |bank, id| {
            bank.withdraw(id, amount)
        })
    }
}

/// Moves `amount` (> 0) between two different accounts of one currency, in one atomic
/// append to both streams. `*out_position` (may be NULL) gets the withdrawal's position.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (also from == to); EVS_ERR_NOT_FOUND;
/// EVS_ERR_ACCOUNT_CLOSED; EVS_ERR_INSUFFICIENT_FUNDS; EVS_ERR_OVERFLOW;
/// EVS_ERR_CURRENCY_MISMATCH; EVS_ERR_WRONG_EXPECTED_VERSION (as for
/// `evs_account_deposit`, either account); EVS_ERR_READ_ONLY; EVS_ERR_IO. Thread safety:
/// any thread.
/// Ownership: the ids stay the caller's.
#[no_mangle]
pub unsafe extern "C" fn evs_account_transfer(
    s: *mut evs_store,
    from_id: *const c_char,
    to_id: *const c_char,
    amount: i64,
    out_position: *mut u64,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let from = unsafe { str_arg(from_id, "from_id") }?;
        let to = unsafe { str_arg(to_id, "to_id") }?;
        let p = store.bank.transfer(from, to, amount)?;
        write_opt(out_position, p);
        Ok(EVS_OK)
    })
}

/// Closes an account (further deposits, withdrawals and transfers are refused).
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT; EVS_ERR_NOT_FOUND; EVS_ERR_ACCOUNT_CLOSED
/// (already closed); EVS_ERR_WRONG_EXPECTED_VERSION (as for `evs_account_deposit`);
/// EVS_ERR_READ_ONLY; EVS_ERR_IO. Thread safety: any thread.
/// Ownership: `account_id` stays the caller's.
#[no_mangle]
pub unsafe extern "C" fn evs_account_close(
    s: *mut evs_store,
    account_id: *const c_char,
    out_position: *mut u64,
) -> evs_status {
    // SAFETY: forwarded C API contract.
    unsafe {
        account_write(s, account_id, out_position, |bank, id| {
            bank.close_account(id)
        })
    }
}

/// The account now, from the in-memory projection.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT (NULL, bad id, a bad `out->struct_size`);
/// EVS_ERR_NOT_FOUND; EVS_ERR_IO or EVS_ERR_CORRUPT (a read-only store failed to take in
/// a writer's new events); EVS_ERR_STALE (its log changed below what it read: reopen).
/// Thread safety: any thread.
/// Ownership: `*out` is the caller's struct, filled only on success.
#[no_mangle]
pub unsafe extern "C" fn evs_account_get(
    s: *mut evs_store,
    account_id: *const c_char,
    out: *mut evs_account,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let id = unsafe { str_arg(account_id, "account_id") }?;
        // SAFETY: NULL or the caller's struct, starting with its size.
        let out = unsafe { out_struct(out, "out") }?;
        let a = store.bank.get(id)?;
        out.write(to_c(&a));
        Ok(EVS_OK)
    })
}

/// The account as it was after its last event at or before `as_of_timestamp_us`,
/// computed from the account's own events.
///
/// Returns EVS_OK; EVS_ERR_INVALID_ARGUMENT; EVS_ERR_NOT_FOUND (no such account, or not
/// yet opened at that time); EVS_ERR_IO; EVS_ERR_CORRUPT (one of its events is damaged).
/// Thread safety: any thread.
/// Ownership: `*out` is the caller's struct, filled only on success.
#[no_mangle]
pub unsafe extern "C" fn evs_account_get_at(
    s: *mut evs_store,
    account_id: *const c_char,
    as_of_timestamp_us: u64,
    out: *mut evs_account,
) -> evs_status {
    boundary(|| {
        // SAFETY: C API contract for each pointer.
        let store = unsafe { store_arg(s) }?;
        let id = unsafe { str_arg(account_id, "account_id") }?;
        // SAFETY: NULL or the caller's struct, starting with its size.
        let out = unsafe { out_struct(out, "out") }?;
        let a = store.bank.get_at(id, as_of_timestamp_us)?;
        out.write(to_c(&a));
        Ok(EVS_OK)
    })
}
