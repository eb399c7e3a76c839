//! What central serves, built whole from a configuration and swapped in on reload:
//! API methods with their compiled scripts, keys and approvals (`[7.2-rt]`,
//! `[7.4-1-rt]`, `[7.4-2-rt]`), central's database pools (`CD-IA-10`), and where each
//! site and instance is. In-flight calls keep the registry they started with.

use crate::site_client::{SiteClient, SiteDirectory};
use rhai::{AST, Engine};
use std::collections::HashMap;
use std::sync::Arc;
use switchyard_core::config::{ApiMethodDef, Config};
use switchyard_core::database::DatabasePool;
use switchyard_core::script::{CompileError, compile};
use switchyard_layers::auth::{Authorization, KeyStore, Principal, StaticKeyStore};

/// One API method, ready to run.
#[derive(Debug)]
pub struct MethodEntry {
    /// Method name.
    pub name: String,
    /// Definition.
    pub def: ApiMethodDef,
    /// Compiled implementation script.
    pub ast: Arc<AST>,
}

/// A configuration, compiled.
pub struct Registry {
    /// The configuration.
    pub config: Arc<Config>,
    /// Methods by name.
    pub methods: HashMap<String, Arc<MethodEntry>>,
    keys: StaticKeyStore,
    /// Central's database pools by connection name.
    pub databases: HashMap<String, Arc<DatabasePool>>,
    /// Client of the sites of this configuration.
    pub sites: SiteClient,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("methods", &self.methods.len())
            .finish()
    }
}

impl Registry {
    /// Compiles every method script; all compile errors are reported. Must run inside
    /// the tokio runtime (database pools are created here).
    pub fn build(config: Config, engine: &Engine) -> Result<Registry, Vec<CompileError>> {
        let mut errors = Vec::new();
        let mut methods = HashMap::new();
        let mut keys = StaticKeyStore::default();
        for (name, def) in &config.api_methods {
            match compile(engine, &def.script) {
                Ok(ast) => {
                    methods.insert(
                        name.clone(),
                        Arc::new(MethodEntry {
                            name: name.clone(),
                            def: def.clone(),
                            ast: Arc::new(ast),
                        }),
                    );
                }
                Err(e) => errors.push(e),
            }
            keys.add_target(name);
            for key in &def.approved_keys {
                keys.approve(name, key);
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        for (name, key) in &config.api_keys {
            // The loader checked the hash format.
            if let Err(e) = keys.add_key(name, &key.hash, key.enabled) {
                errors.push(CompileError {
                    file: config.source.display().to_string(),
                    line: 1,
                    column: 1,
                    message: e,
                });
            }
        }
        let mut databases = HashMap::new();
        for (name, def) in &config.databases {
            match DatabasePool::open(name, def, &config.base_dir) {
                Ok(pool) => {
                    databases.insert(name.clone(), Arc::new(pool));
                }
                Err(e) => {
                    tracing::warn!(database = %name, error = %e, "central database connection unusable")
                }
            }
        }
        let sites = SiteClient::new(
            Arc::new(SiteDirectory::from_config(&config)),
            config.central.site_connect_timeout,
        );
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Registry {
            config: Arc::new(config),
            methods,
            keys,
            databases,
            sites,
        })
    }

    /// A method by name.
    pub fn method(&self, name: &str) -> Option<&Arc<MethodEntry>> {
        self.methods.get(name)
    }

    /// Methods the principal may call, sorted by name.
    pub fn approved_methods(&self, principal: &Principal) -> Vec<&Arc<MethodEntry>> {
        let mut methods: Vec<_> = self
            .methods
            .values()
            .filter(|m| self.keys.authorize(principal, &m.name) == Authorization::Allowed)
            .collect();
        methods.sort_by(|a, b| a.name.cmp(&b.name));
        methods
    }
}

impl KeyStore for Registry {
    fn authenticate(&self, presented: &str) -> Option<Principal> {
        self.keys.authenticate(presented)
    }

    fn authorize(&self, principal: &Principal, target: &str) -> Authorization {
        self.keys.authorize(principal, target)
    }
}
