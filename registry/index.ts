// The registry client's public API. See README.md.
export { pull, pullImage, listTags, type PullOptions, type PullResult } from './pull.js';
export { pushImage, type PushOptions, type PushResult } from './push.js';
export { copyImage, type CopyOptions, type CopyResult } from './copy.js';
export { login, logout, normalizeRegistryHost } from './login.js';
export { getCredentials, storeCredentials, eraseCredentials, authFilePath, type Credentials } from './credentials.js';
export { RegistryClient, closeAgents, type ClientOptions } from './transport.js';
export { RegistryError, AuthError, ContentError } from './errors.js';
export { parsePlatform, type ProgressEvent, type ProgressFn, type PlatformSpec } from './common.js';
export { DEFAULT_CHUNK_SIZE } from './upload.js';
