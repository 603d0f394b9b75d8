package dev.edgewise.sample

import android.app.Application
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope

/**
 * Holds the [ChatController] for the activity's lifetime and releases the model with it.
 * The model (~250 MB) and the router's files live in `noBackupFilesDir`: Auto Backup copies
 * `filesDir` to the user's cloud backup, and a model that can be downloaded again must not be in it.
 */
class ChatViewModel(app: Application) : AndroidViewModel(app) {
    val chat = ChatController(viewModelScope, homeDir = app.noBackupFilesDir.path)

    override fun onCleared() {
        chat.close()
    }
}
