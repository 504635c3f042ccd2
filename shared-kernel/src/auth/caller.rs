//! The authenticated caller of a request: its subject, scopes and program (ADR 0018).

use crate::problem::Problem;
use crate::program;

#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: String,
    scopes: Vec<String>,
    /// The program the token is bound to; `None` for a platform token.
    program: Option<String>,
}

impl Caller {
    pub fn new(
        subject: String,
        scopes: impl IntoIterator<Item = String>,
        program: Option<String>,
    ) -> Self {
        Self {
            subject,
            scopes: scopes.into_iter().collect(),
            program,
        }
    }

    /// 403 problem unless the token carries `scope`.
    pub fn require(&self, scope: &str) -> Result<(), Problem> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this operation needs the scope '{scope}'"
            )))
        }
    }

    /// The program the token is bound to; `None` for a platform token.
    pub fn program(&self) -> Option<&str> {
        self.program.as_deref()
    }

    /// Whether this caller may see a resource of `program`. Callers answer a resource
    /// it may not see exactly as an unknown one (404), so ids do not leak.
    pub fn sees(&self, program: &str) -> bool {
        program::visible(self.program(), program)
    }

    /// The program a new resource goes to: a bound caller's own (403 if it names
    /// another); for a platform caller the one it names, else [`program::DEFAULT`].
    pub fn within(&self, requested: Option<&str>) -> Result<String, Problem> {
        match (self.program(), requested) {
            (Some(own), None) => Ok(own.to_owned()),
            (Some(own), Some(r)) if r == own => Ok(own.to_owned()),
            (Some(_), Some(_)) => Err(Problem::forbidden(
                "this token is bound to another program and cannot act in the one named",
            )),
            (None, Some(r)) => Ok(r.to_owned()),
            (None, None) => Ok(program::DEFAULT.to_owned()),
        }
    }

    /// 403 problem for a token bound to a program: the operation spans every program
    /// (settlement runs and batches, the audit log).
    pub fn require_platform(&self) -> Result<(), Problem> {
        match self.program() {
            None => Ok(()),
            Some(_) => Err(Problem::forbidden(
                "this operation spans every program; a token bound to one cannot use it",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(program: Option<&str>) -> Caller {
        Caller::new(
            "s".into(),
            ["a:read".to_owned()],
            program.map(str::to_owned),
        )
    }

    #[test]
    fn a_bound_caller_acts_in_its_own_program_only() {
        let acme = caller(Some("acme"));
        assert!(acme.sees("acme"));
        assert!(!acme.sees("globex"));
        assert_eq!(acme.within(None).unwrap(), "acme");
        assert_eq!(acme.within(Some("acme")).unwrap(), "acme");
        assert_eq!(acme.within(Some("globex")).unwrap_err().status, 403);
        assert_eq!(acme.require_platform().unwrap_err().status, 403);
    }

    #[test]
    fn a_platform_caller_sees_every_program() {
        let platform = caller(None);
        assert!(platform.sees("acme") && platform.sees(program::DEFAULT));
        assert_eq!(platform.within(None).unwrap(), program::DEFAULT);
        assert_eq!(platform.within(Some("globex")).unwrap(), "globex");
        assert!(platform.require_platform().is_ok());
        assert!(platform.require("a:read").is_ok());
        assert_eq!(platform.require("a:write").unwrap_err().status, 403);
    }
}
