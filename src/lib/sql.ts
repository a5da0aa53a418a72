/** Escapes LIKE wildcards so a search for "a_b" means exactly that. */
export const likePattern = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
