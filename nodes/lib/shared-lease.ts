/**
 * What device and graph config nodes share with Node-RED's MQTT broker node: users register and
 * deregister, the last one to leave releases what the config node holds (freed at once when the
 * node was removed, otherwise kept for a redeploy), and closing the config node drops every user.
 */
export abstract class SharedLease<User extends object> {
  protected readonly users = new Set<User>();
  protected closed = false;

  deregister(user: User, removed: boolean): Promise<void> {
    if (!this.users.delete(user) || this.users.size > 0) return Promise.resolve();
    return this.release(removed);
  }

  close(removed: boolean): Promise<void> {
    this.closed = true;
    this.users.clear();
    return this.release(removed);
  }

  protected abstract release(removed: boolean): Promise<void>;
}
