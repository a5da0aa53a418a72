export * from './organizations.js';
export * from './users.js';
export * from './auth.js';
export * from './audit.js';
export * from './projects.js';
export * from './credentials.js';
