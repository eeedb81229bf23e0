//! Table output (`as=Table`): the columns and rows kubectl prints for each kind.
