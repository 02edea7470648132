// Loads packages from the npm peers that scripts/peers installs into .peers/npm. The scripts in this
// folder stay in the repository while their dependencies live there, and Node's ES-module
// resolution looks only beside the importing file (it ignores NODE_PATH), so they import through
// this helper instead of by bare name. PEER_NPM_DIR names another install directory.
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const installDir = process.env.PEER_NPM_DIR ?? path.resolve(here, '../../../.peers/npm');
const resolver = createRequire(path.join(installDir, 'package.json'));

/** Imports the installed package `name` (its ES-module entry when it has one). */
export async function importPeer(name) {
  let entry;
  try {
    entry = resolver.resolve(name);
  } catch (cause) {
    throw new Error(`${name} is not installed in ${installDir}: run \`bash scripts/peers\``, { cause });
  }
  return import(pathToFileURL(entry).href);
}
